from django.apps import AppConfig


class MmplatformConfig(AppConfig):
    """The project package as an app: platform-wide management commands (run_platform, seed_demo)."""

    name = "mmplatform"
    verbose_name = "Platform"
