"""Settings of Pygigo's default site: what `pygigo …` and `make dev` run when
DJANGO_SETTINGS_MODULE names nothing else. Every value can be overridden from the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from pygigo.platform.settings import DEV_SECRET_KEY


def _home() -> Path:
    """Where the default site keeps its SQLite database: ``PYGIGO_HOME``, else the user's data
    folder (``$XDG_DATA_HOME/pygigo``, by default ``~/.local/share/pygigo``). Never the current
    directory: every process (web, worker, scheduler, a plain producer) must open the same file
    wherever it was started. ``pygigo migrate`` creates it."""
    if os.environ.get("PYGIGO_HOME"):
        return Path(os.environ["PYGIGO_HOME"])
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "pygigo"


DATA_DIR = _home()

# The default key is public: with DEBUG off (the default outside `pygigo dev`) Pygigo refuses
# to sign or run anything with it, and `manage.py check` reports it (pygigo.E003).
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", DEV_SECRET_KEY)
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "pygigo.adapters.db",  # the db:// broker's table and admin
    "pygigo.django_site.apps.PygigoConfig",
    "pygigo.django_site.scheduling.apps.SchedulingConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

# Broker URLs appear on the debug page and in error reports without their password.
DEFAULT_EXCEPTION_REPORTER_FILTER = "pygigo.django_site.debug.RedactingExceptionReporterFilter"

ROOT_URLCONF = "pygigo.default_site.urls"
WSGI_APPLICATION = "pygigo.default_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("PYGIGO_SQLITE_PATH", str(DATA_DIR / "pygigo.sqlite3")),
        # Worker threads keep their connection between messages (checked before reuse).
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        # Web and worker threads and processes write concurrently (the database may be the
        # broker): WAL lets readers and one writer work at once; IMMEDIATE transactions take the
        # write lock up front (waiting up to `timeout` seconds) instead of failing with
        # "database is locked" when upgrading later.
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}

# PostgreSQL, from the environment (SQLite stays the default): PYGIGO_POSTGRES_NAME adds a
# "postgres" alias; PYGIGO_DEFAULT_DATABASE=postgres also makes it the default (multi-process
# tests and production-like set-ups).
if os.environ.get("PYGIGO_POSTGRES_NAME"):
    DATABASES["postgres"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["PYGIGO_POSTGRES_NAME"],
        "HOST": os.environ.get("PYGIGO_POSTGRES_HOST", "127.0.0.1"),
        "PORT": os.environ.get("PYGIGO_POSTGRES_PORT", "5432"),
        "USER": os.environ.get("PYGIGO_POSTGRES_USER", "postgres"),
        "PASSWORD": os.environ.get("PYGIGO_POSTGRES_PASSWORD", ""),
        # A new connection per request cost more than the accept's INSERT itself.
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
    if os.environ.get("PYGIGO_DEFAULT_DATABASE") == "postgres":
        DATABASES["default"] = DATABASES["postgres"]

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

PYGIGO_BROKER_URL = os.environ.get("PYGIGO_BROKER_URL", "memory://")
# HTTP API limits (see pygigo.django_site.api).
PYGIGO_MAX_BODY_BYTES = 1024 * 1024
PYGIGO_RATE_LIMIT = os.environ.get("PYGIGO_RATE_LIMIT", "600/60")  # requests / seconds, per principal
PYGIGO_MAX_WAIT_S = 30.0
PYGIGO_RESULT_TTL_S = 7 * 24 * 3600

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"pygigo": {"handlers": ["console"], "level": os.environ.get("PYGIGO_LOG_LEVEL", "INFO")}},
}
