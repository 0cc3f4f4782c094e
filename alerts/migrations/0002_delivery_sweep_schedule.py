"""Beat's ``alert-delivery-sweep`` entry (alerts.tasks.sweep_deliveries): the platform's idempotent installer
(mmplatform/schedules.py), as mmplatform's own schedule migrations run it."""

from typing import Any

from django.db import migrations


def install(apps: Any, schema_editor: Any) -> None:
    from mmplatform.schedules import install_default_schedules

    install_default_schedules(apps)


class Migration(migrations.Migration):

    dependencies = [
        ("alerts", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
