from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "zooplatform.workflows"
    label = "workflows"
