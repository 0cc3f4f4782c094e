from django.apps import AppConfig


class MmplatformConfig(AppConfig):
    """The project package as an app: platform-wide management commands (run_platform), and the
    Celery app created on start so ``shared_task``s bind to it in every Django process."""

    name = "mmplatform"
    verbose_name = "Platform"

    def ready(self) -> None:
        import mmplatform.celery  # noqa: F401
        from mmplatform.db_adapters import cache_statement_parses, register_choice_dumpers

        register_choice_dumpers()  # (every app's models are imported before any ready)
        cache_statement_parses()
