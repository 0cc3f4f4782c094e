"""Beat's hourly ``storage-retention`` entry (bots.tasks.prune_storage, bots/retention.py) for
deployments migrated before it existed: the same idempotent installer as 0001 (entries that exist are
left as the admin set them)."""

from typing import Any

from django.db import migrations


def install(apps: Any, schema_editor: Any) -> None:
    from mmplatform.schedules import install_default_schedules

    install_default_schedules(apps)


class Migration(migrations.Migration):

    dependencies = [
        ("mmplatform", "0001_beat_schedules"),
    ]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
