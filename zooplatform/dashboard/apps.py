from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "zooplatform.dashboard"
    label = "dashboard"
    verbose_name = "Project scientists' dashboard"
