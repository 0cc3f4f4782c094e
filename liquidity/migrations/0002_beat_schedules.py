"""Beat's ``sla-figures`` (every minute) and ``sla-reports`` (daily 00:10 UTC) entries for deployments
migrated before they existed: the platform's idempotent installer (entries that exist are left as the
admin set them)."""

from typing import Any

from django.db import migrations


def install(apps: Any, schema_editor: Any) -> None:
    from mmplatform.schedules import install_default_schedules

    install_default_schedules(apps)


class Migration(migrations.Migration):

    dependencies = [
        ("liquidity", "0001_initial"),
        ("mmplatform", "0002_storage_retention_schedule"),
    ]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
