"""The Celery app. Workers start with ``celery -A zooplatform worker``; configuration comes from
Django settings (``CELERY_*``), so the broker is the embedded filesystem transport unless
``CELERY_BROKER_URL``/``REDIS_URL`` say otherwise."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zooplatform.settings")

app = Celery("zooplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _make_broker_folders(sender, **kwargs):
    """kombu's filesystem transport needs its folders to exist before the first message."""
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            os.makedirs(options[key], exist_ok=True)
    backend = sender.conf.result_backend or ""
    if backend.startswith("file://"):
        os.makedirs(backend[len("file://"):], exist_ok=True)
