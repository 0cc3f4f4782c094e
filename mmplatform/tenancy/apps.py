from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "mmplatform.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"
