"""Settings for the test suite: the real settings, with test-friendly environment defaults.

Explicit environment variables (DATABASE_URL, REDIS_URL from .ci/run) still win.
"""

import os

from mmplatform import network_guard
from mmplatform.redis_config import database_of, with_database

# A process a test started (worker, beat, daphne, the emulator, run_platform) runs offline like the test
# session itself: tests/conftest.py names the log of refused hosts in the environment.
network_guard.install_from_environment()

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("SECURE_SSL", "0")
os.environ.setdefault("LOG_LEVEL", "WARNING")

# pytest-xdist (``make test`` runs the suite on several worker processes, gw0, gw1, ...): pytest-django
# gives each worker a SQL test database of its own; here each gets a Redis database of its own on the
# same server (the base URL's database + the worker's number), because every test starts by deleting the
# platform's keys and a worker's engine drivers must see only its own bots. The processes a test starts
# inherit the rewritten REDIS_URL; the marker keeps them (which load these settings too) from shifting it
# again. The base is REDIS_URL as set, or the embedded Redis the xdist controller started and exported.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _XDIST_WORKER and os.environ.get("MMPLATFORM_XDIST_REDIS") != _XDIST_WORKER and os.environ.get("REDIS_URL"):
    _base = os.environ["REDIS_URL"]
    _db = database_of(_base) + int(_XDIST_WORKER.removeprefix("gw"))
    if _db > 15:
        raise RuntimeError(f"xdist worker {_XDIST_WORKER} would use Redis database {_db} of {_base}: "
                           "a stock Redis has 16 (0-15); use fewer workers or a lower base database")
    os.environ["REDIS_URL"] = with_database(_base, _db)
    os.environ["MMPLATFORM_XDIST_REDIS"] = _XDIST_WORKER

from mmplatform.settings import *  # noqa: E402, F403  (after the environment above)
from mmplatform.settings import DATABASES, VAR_DIR  # noqa: E402

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so Celery workers and daphne started by tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
