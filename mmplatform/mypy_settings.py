"""Settings for mypy's Django plugin (``[tool.django-stubs]`` in pyproject.toml): the real settings, loaded
without starting anything. The plugin only imports the apps and their models; it never connects, so an unset
REDIS_URL gets a placeholder instead of starting the embedded Redis server."""

import os

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")  # never connected by mypy

from mmplatform.settings import *  # noqa: F403
