from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from controlplane.accounts.services import token_create
from controlplane.audit.context import Actor

SCOPES = ("read", "deploy", "admin")


class Command(BaseCommand):
    help = "Create an API token for a user and print it once. Only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="username")
        parser.add_argument("--name", required=True, help="what the token is for, e.g. github-actions")
        parser.add_argument("--scopes", default="read,deploy", help=f"comma-separated, from {', '.join(SCOPES)}")
        parser.add_argument("--expires-days", type=int, default=90, help="1 to 366")

    def handle(self, *args, user, name, scopes, expires_days, **options):
        owner = get_user_model().objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"No user named {user!r}.")
        scope_list = [s.strip() for s in scopes.split(",") if s.strip()]
        unknown = set(scope_list) - set(SCOPES)
        if unknown or not scope_list:
            raise CommandError(f"--scopes: use some of {', '.join(SCOPES)}; got {scopes!r}.")
        if not 1 <= expires_days <= 366:
            raise CommandError("--expires-days must be from 1 to 366.")
        expires_at = timezone.now() + timedelta(days=expires_days)
        try:
            token, secret = token_create(actor=Actor.system(), user=owner, name=name, scopes=scope_list, expires_at=expires_at)
        except (ValidationError, PermissionDenied) as exc:
            raise CommandError(" ".join(getattr(exc, "messages", [str(exc)]))) from None
        self.stderr.write(f"Token {token.prefix} for {user} ({', '.join(scope_list)}), expires {expires_at:%Y-%m-%d}. "
                          "It is shown once; store it now.")
        self.stdout.write(secret)
