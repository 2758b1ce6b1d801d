from django.apps import AppConfig


class GalaxiesConfig(AppConfig):
    name = "zooplatform.galaxies"
    label = "galaxies"
