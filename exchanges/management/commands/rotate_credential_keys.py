"""Re-encrypt every stored credential (exchange accounts, alert webhooks' signing secrets) under the
primary CREDENTIAL_KEYS key.

Rotation: put the new key first in CREDENTIAL_KEYS (keeping the old one after it), run this
command, then drop the old key. Every row is rewritten in one transaction.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from exchanges.crypto import CredentialDecryptionError
from exchanges.services import rotate_all_credentials


class Command(BaseCommand):
    help = "Re-encrypt every exchange credential and webhook signing secret with the first key of CREDENTIAL_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        from exchanges.models import ExchangeAccount

        if ExchangeAccount._meta.db_table not in connection.introspection.table_names():
            raise CommandError("the database has no exchange accounts table yet: run `manage.py migrate` first "
                               "(`make run` does)")
        from alerts.services import channel_secrets_rotate

        try:
            with transaction.atomic():
                count = rotate_all_credentials()
                channels = channel_secrets_rotate()
        except CredentialDecryptionError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"re-encrypted credentials of {count} exchange account(s) and the "
                                             f"signing secrets of {channels} alert channel(s)"))
