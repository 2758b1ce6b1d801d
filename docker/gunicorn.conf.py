"""gunicorn settings for the web container (and the load benchmark). Tunable from the environment."""
import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# Sync workers with a few threads each: requests are short and mostly wait on PostgreSQL/Redis.
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2))
threads = int(os.environ.get("GUNICORN_THREADS", 4))
worker_class = "gthread"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = 20
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", 20000))
max_requests_jitter = 2000
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
preload_app = True


def pre_fork(server, worker):
    """Move everything the preloaded app allocated into the collector's permanent generation before the
    worker is forked: a full collection then scans only what requests allocate, not the ~190,000 objects
    of Django, DRF, numpy and scipy (87 ms with the GIL held, a stall for every request in the worker),
    and the collector stops touching (and so copying) the pages the workers share with the master."""
    import gc

    gc.freeze()
