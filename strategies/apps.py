from django.apps import AppConfig


class StrategiesConfig(AppConfig):
    """Registers the pure strategies package so its management commands (simulate_as) load."""

    name = "strategies"
    verbose_name = "Strategies"
