"""Settings for the test suite: the real settings, with test-friendly environment defaults.

Explicit environment variables (DATABASE_URL, REDIS_URL from .ci/run) still win.
"""

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("SECURE_SSL", "0")
os.environ.setdefault("LOG_LEVEL", "WARNING")

from mmplatform.settings import *  # noqa: F403
from mmplatform.settings import DATABASES, VAR_DIR

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so Celery workers and daphne started by tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
