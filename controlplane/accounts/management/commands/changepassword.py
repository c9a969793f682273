"""Django's changepassword, with an audit event (never the password) in the same transaction.

Overrides django.contrib.auth's command (controlplane.accounts comes first in INSTALLED_APPS).
"""
import getpass

from django.contrib.auth import get_user_model
from django.contrib.auth.management.commands import changepassword
from django.db import transaction

from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record


class Command(changepassword.Command):
    def handle(self, *args, **options):
        User = get_user_model()
        username = options["username"] or getpass.getuser()  # as Django's command picks it
        with transaction.atomic(using=options["database"]):
            result = super().handle(*args, **options)
            user = User._default_manager.using(options["database"]).get(**{User.USERNAME_FIELD: username})
            audit_record(actor=Actor.system(), action="user.password_change", obj=user, after={"password": "changed"})
        return result
