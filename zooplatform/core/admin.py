# The core app has no models of its own; Celery beat's schedules are administered through
# django_celery_beat's own admin pages.
