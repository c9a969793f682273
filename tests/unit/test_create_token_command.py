import io

import pytest
from django.core.management import CommandError, call_command

from controlplane.accounts.models import ApiToken
from controlplane.accounts.tokens import hash_token
from controlplane.audit.models import AuditEvent


def test_prints_the_secret_once_and_stores_only_its_hash(deployer):
    out = io.StringIO()
    call_command("create_token", "--user", "dana", "--name", "ci", stdout=out, stderr=io.StringIO())
    secret = out.getvalue().strip()
    token = ApiToken.objects.get()
    assert secret.startswith(f"sy_{token.prefix}_") and token.secret_hash == hash_token(secret)
    assert secret not in str(AuditEvent.objects.get(action="token.create").after)
    assert token.scopes == ["read", "deploy"] and token.expires_at is not None


@pytest.mark.parametrize(
    "args",
    [
        ["--user", "nobody"],
        ["--user", "dana", "--scopes", "root"],
        ["--user", "dana", "--expires-days", "0"],
        ["--user", "dana", "--scopes", "admin"],  # beyond dana's deployer role
    ],
)
def test_bad_arguments_are_errors(deployer, args):
    with pytest.raises(CommandError):
        call_command("create_token", *args, "--name", "ci", stdout=io.StringIO(), stderr=io.StringIO())
    assert not ApiToken.objects.exists()
