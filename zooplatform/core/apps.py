from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "zooplatform.core"
    label = "core"
