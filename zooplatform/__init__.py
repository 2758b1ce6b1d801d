"""The Django project of the galaxy-zoo platform.

Named ``zooplatform`` rather than ``platform``: a top-level ``platform`` package would shadow the
standard-library module that torch, Celery and Django import.
"""
from .celery import app as celery_app

__all__ = ("celery_app",)
