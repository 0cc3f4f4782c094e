"""The platform's beat schedules (watchdog, per-bot rebalancing tick, daily risk reset) installed by
``migrate``, so a production deployment needs nothing but ``migrate`` and one ``celery beat``
(mmplatform/schedules.py)."""

from typing import Any

from django.db import migrations


def install(apps: Any, schema_editor: Any) -> None:
    from mmplatform.schedules import install_default_schedules

    install_default_schedules(apps)


class Migration(migrations.Migration):

    dependencies = [
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
