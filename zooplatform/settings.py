"""Settings for the galaxy-zoo platform: every value comes from the environment, read here and only here.

Embedded defaults let a bare clone run with no server installed: SQLite in ``var/``, media in
``var/media``, Celery on kombu's filesystem transport (a real worker process consumes it), torch on
CUDA when present else the CPU. Production sets ``ZOO_ENV=production`` and must then provide
``SECRET_KEY`` and ``ALLOWED_HOSTS``; ``DATABASE_URL`` and ``CELERY_BROKER_URL``/``REDIS_URL`` switch
to PostgreSQL and Redis. ``docker/example.env`` lists every variable.
"""
from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool) -> bool:
    value = env(name)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false)")


def env_int(name: str, default: int) -> int:
    value = env(name)
    try:
        return default if value is None else int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in (env(name, default) or "").split(",") if item.strip()]


def required(name: str) -> str:
    value = env(name)
    if value is None:
        raise ImproperlyConfigured(f"{name} must be set when ZOO_ENV=production (see docker/example.env)")
    return value


# ---------------------------------------------------------------------------------------------- profile
ZOO_ENV = env("ZOO_ENV", "development")
if ZOO_ENV not in {"development", "production", "test"}:
    raise ImproperlyConfigured(f"ZOO_ENV={ZOO_ENV!r}: use development, production or test")
PRODUCTION = ZOO_ENV == "production"

VAR_DIR = Path(env("ZOO_VAR_DIR", str(BASE_DIR / "var"))).resolve()

if PRODUCTION:
    SECRET_KEY = required("SECRET_KEY")
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS") or [required("ALLOWED_HOSTS")]
    DEBUG = env_bool("DEBUG", False)
else:
    # Development only: a fixed key is fine because nothing here is exposed beyond localhost.
    SECRET_KEY = env("SECRET_KEY", "django-insecure-development-only-key-not-for-production-use-3f9a1c")
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
    DEBUG = env_bool("DEBUG", ZOO_ENV == "development")

CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# ---------------------------------------------------------------------------------------------- apps
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_celery_beat",
    "zooplatform.core",
    "zooplatform.workflows",
    "zooplatform.galaxies",
    "zooplatform.classify",
    "zooplatform.learning",
    "zooplatform.dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "zooplatform.urls"
WSGI_APPLICATION = "zooplatform.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# ---------------------------------------------------------------------------------------------- database
DATABASE_URL = env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DATABASES["default"]["NAME"] != ":memory:":
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # The web server, the worker and beat share one file: WAL lets readers run beside the one writer,
    # IMMEDIATE transactions take the write lock up front (no mid-transaction "database is locked"),
    # and the timeout makes a writer wait for the lock rather than fail.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # The test database is a file, not memory, so that the tests' Celery worker processes can share it;
    # one per test process, so that two test runs in one checkout never touch each other's.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend whose per-request health check asks the socket before it asks the server.
        DATABASES["default"]["ENGINE"] = "zooplatform.core.postgresql"
    # psycopg prepares a server-binding statement on its first use on a connection. Only the hot paths'
    # statements bind on the server (zooplatform.core.db.prepared_cursor); Django's own cursors bind on the
    # client and are never prepared. Turn it off behind a pooler in transaction mode that cannot keep
    # prepared statements (PgBouncer before 1.21).
    if env_bool("DB_PREPARED_STATEMENTS", True):
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ---------------------------------------------------------------------------------------------- cache
REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "zooplatform.core.cache.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# ---------------------------------------------------------------------------------------------- auth
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Sessions are read on every volunteer API call: from the cache first, the database only on a miss.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

# ---------------------------------------------------------------------------------------------- i18n
LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# ---------------------------------------------------------------------------------------------- files
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
WHITENOISE_USE_FINDERS = not PRODUCTION  # development serves static/ directly, no collectstatic needed
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing root on every start
MEDIA_URL = env("MEDIA_URL", "/media/")
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(VAR_DIR / "media")))
# Checkpoints and images live in the default storage; set STORAGE_BACKEND to share them between machines
# (an NFS mount as MEDIA_ROOT, or an S3-compatible backend installed separately).
STORAGES = {
    "default": {"BACKEND": env("STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage")},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
FILE_UPLOAD_PERMISSIONS = 0o644
# Serve MEDIA_URL from Django itself: on for development and the compose setup; a large deployment
# turns it off and serves media from a CDN, nginx or object storage instead.
SERVE_MEDIA = env_bool("SERVE_MEDIA", True)

# ---------------------------------------------------------------------------------------------- celery
# The embedded default needs no server: kombu's filesystem transport, consumed by a real worker process.
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", REDIS_URL or f"file://{VAR_DIR / 'celery-results'}")
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Redis: a task whose worker died is redelivered after this long (acks_late tasks). Longer than the
    # longest task (retraining, 6 h), so a task still running is never handed to a second worker; the
    # catch-up sweep, not redelivery, is what rescues a lost classification update within a minute.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 7 * 3600)}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = True
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# GPU work goes to the gpu queue; aggregation stays on default. Any worker started with -Q gpu consumes
# it, on CUDA when present and on the CPU otherwise.
CELERY_TASK_ROUTES = {
    "learning.retrain": {"queue": "gpu"},
    "learning.score": {"queue": "gpu"},
}
CELERY_BEAT_SCHEDULE = {
    # Classifications whose online update was missed (broker down, worker killed).
    "aggregation-catch-up": {"task": "learning.aggregation_catch_up",
                             "schedule": float(env_int("ZOO_CATCH_UP_SECONDS", 60))},
    # Batch re-aggregation: EM over everything, skills re-learned, machine recalibrated.
    "aggregation-sweep": {"task": "learning.aggregation_sweep_all",
                          "schedule": float(env_int("ZOO_SWEEP_SECONDS", 3600))},
    # Retrain when enough new retirements have accumulated (or the model is old).
    "retrain-if-due": {"task": "learning.retrain_if_due", "schedule": float(env_int("ZOO_RETRAIN_CHECK_SECONDS", 300))},
}
CELERY_TIMEZONE = TIME_ZONE

# ---------------------------------------------------------------------------------------------- learning
ZOO_JOB_STALE_SECONDS = env_int("ZOO_JOB_STALE_SECONDS", 1800)  # a job silent this long is taken as dead
TORCH_DEVICE = env("TORCH_DEVICE", "auto")  # auto | cpu | cuda | cuda:N; auto picks CUDA when present
if TORCH_DEVICE != "auto" and not (TORCH_DEVICE == "cpu" or TORCH_DEVICE.startswith("cuda")):
    raise ImproperlyConfigured(f"TORCH_DEVICE={TORCH_DEVICE!r}: use auto, cpu, cuda or cuda:N")

# ---------------------------------------------------------------------------------------------- security
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# ---------------------------------------------------------------------------------------------- logging
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# ---------------------------------------------------------------------------------------------- API
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Token first: a script's token wins over a stray session cookie. Both classes are DRF's: the session
    # one checks CSRF for anonymous volunteers too (their session cookie identifies them), the token one
    # answers at once for requests with no Authorization header.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "zooplatform.classify.authentication.TokenAuthentication",
        "zooplatform.classify.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "EXCEPTION_HANDLER": "zooplatform.core.exceptions.api_exception_handler",
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "zooplatform.core.api.JsonFirstNegotiation",
    # Volunteer API throttles (zooplatform.classify.throttles): per volunteer (user or anonymous session)
    # and per client address; a classroom behind one address needs the higher IP rate.
    "DEFAULT_THROTTLE_RATES": {
        "volunteer": env("THROTTLE_VOLUNTEER_RATE", "300/min"),
        "ip": env("THROTTLE_IP_RATE", "3000/min"),
    },
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Galaxy Zoo platform API",
    "DESCRIPTION": "Volunteers classify galaxies; scientists steer the active-learning loop. Browsers use "
                   "the session cookie (with the CSRF token on writes); scripts send `Authorization: Token "
                   "<key>` (get one from `/api/auth/token/`).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}
