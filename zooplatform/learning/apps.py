from django.apps import AppConfig


class LearningConfig(AppConfig):
    name = "zooplatform.learning"
    label = "learning"
