"""Django's createsuperuser, with the new account's audit event in the same transaction.

Overrides django.contrib.auth's command (controlplane.accounts comes first in INSTALLED_APPS),
since every change to state is audited whatever the entry point.
"""
from django.contrib.auth import get_user_model
from django.contrib.auth.management.commands import createsuperuser
from django.db import transaction

from controlplane.accounts.services import user_created_record
from controlplane.audit.context import Actor


class Command(createsuperuser.Command):
    def handle(self, *args, **options):
        users = get_user_model()._default_manager.db_manager(options["database"])
        with transaction.atomic(using=options["database"]):
            last = users.order_by("-pk").values_list("pk", flat=True).first() or 0
            super().handle(*args, **options)
            for user in users.filter(pk__gt=last):
                user_created_record(actor=Actor.system(), user=user)
