"""A host site's settings, not this repository's: taskqueue under ``queue/``, no
``TASKQUEUE["HARDEN_SERVER"]`` unless ``TQ_TEST_HARDEN=1`` (test_server_hardening)."""

import os
from pathlib import Path

SECRET_KEY = "a host site's own secret key, long enough for the checks 0123456789"
DEBUG = False
ALLOWED_HOSTS = ["localhost"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "tasks_app",
    "workers_app",
]
ROOT_URLCONF = "tests.urls_without_admin"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": Path(os.environ.get("TMPDIR", "/tmp")) / "host-site.sqlite3"}}
USE_TZ = True
REDIS = "redis://127.0.0.1:6379/0"
TASKQUEUE = {"REDIS_URL": REDIS,
             **({"HARDEN_SERVER": True} if os.environ.get("TQ_TEST_HARDEN") == "1" else {})}
CHANNEL_LAYERS = {"default": {
    "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "CONFIG": {"hosts": [REDIS], "serializer_format": "json"},
}}
