"""gateway.access: bearer tokens against the routing table's hashes."""
import hashlib

import pytest

from gateway.access import Caller, check_access
from gateway.table import FORMAT, Endpoint, Token, parse_table

NOW = 1_764_600_000.0


def sha(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def token(secret, team="vision", scopes=("infer",), expires_at=None):
    return Token(team=team, sha256=sha(secret), scopes=frozenset(scopes), expires_at=expires_at)


TOKENS = {t.sha256: t for t in [
    token("sy_infer"),
    token("sy_deploy", scopes=("infer", "deploy")),
    token("sy_admin", scopes=("infer", "admin")),
    token("sy_deploy_only", scopes=("deploy",)),
    token("sy_read", scopes=("read",)),
    token("sy_expired", scopes=("infer", "deploy"), expires_at=NOW - 1),
    token("sy_expires_now", scopes=("infer",), expires_at=NOW),
    token("sy_later", scopes=("infer",), expires_at=NOW + 60),
    token("sy_speech", team="speech", scopes=("infer", "admin")),
]}


def endpoint(access="token"):
    return Endpoint(name="vision.fraud-scorer", team="vision", access=access, sticky_header=None, sticky_cookie=None,
                    labels={}, variants=(), shadow=None)


def check(secret=None, access="token", header=None):
    authorization = header if header is not None else (None if secret is None else f"Bearer {secret}")
    return check_access(endpoint(access), TOKENS, authorization, NOW)


# -- token endpoints --------------------------------------------------------------------------------

def test_infer_token_may_infer_not_choose():
    c = check("sy_infer")
    assert (c.may_infer, c.may_choose_variant, c.status, c.team) == (True, False, 403, "vision")
    assert "'deploy' or 'admin'" in c.reason


@pytest.mark.parametrize("secret", ["sy_deploy", "sy_admin"])
def test_deploy_or_admin_token_may_choose(secret):
    assert check(secret) == Caller(True, True, "", 0, "vision")


def test_no_token_is_401():
    c = check(None)
    assert (c.may_infer, c.may_choose_variant, c.status) == (False, False, 401)
    assert c.reason == "no token: endpoint 'vision.fraud-scorer' requires a bearer token"
    assert check(header="").status == 401


def test_unknown_token_is_401():
    c = check("sy_nope")
    assert (c.may_infer, c.status) == (False, 401)
    assert c.reason.startswith("unknown token")


@pytest.mark.parametrize("secret", ["sy_expired", "sy_expires_now"])
def test_expired_token_is_401(secret):
    c = check(secret)
    assert (c.may_infer, c.may_choose_variant, c.status) == (False, False, 401)
    assert c.reason.startswith("expired token")


def test_token_expiring_later_works():
    assert check("sy_later").may_infer


def test_other_teams_token_is_403():
    c = check("sy_speech")
    assert (c.may_infer, c.may_choose_variant, c.status, c.team) == (False, False, 403, "speech")
    assert "another team" in c.reason


@pytest.mark.parametrize("secret", ["sy_read", "sy_deploy_only"])
def test_token_without_infer_scope_is_403(secret):
    c = check(secret)
    assert (c.may_infer, c.status) == (False, 403)
    assert "'infer' scope" in c.reason


@pytest.mark.parametrize("header", [
    "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "sy_infer", "Token sy_infer",
])
def test_malformed_authorization_is_401(header):
    c = check(header=header)
    assert (c.may_infer, c.status) == (False, 401)
    assert c.reason.startswith("malformed Authorization header")


@pytest.mark.parametrize("header", ["bearer sy_infer", "BEARER sy_infer", "  Bearer   sy_infer  "])
def test_scheme_is_case_insensitive_and_spaces_tolerated(header):
    assert check(header=header).may_infer


def test_non_ascii_token_is_just_unknown():
    assert check("sy_\udcff\u00e9").status == 401


# -- open endpoints ---------------------------------------------------------------------------------

@pytest.mark.parametrize("secret", [None, "sy_nope", "sy_expired", "sy_read", "sy_speech", "sy_infer"])
def test_open_endpoint_serves_anyone_but_only_its_team_chooses(secret):
    c = check(secret, access="open")
    assert c.may_infer and not c.may_choose_variant
    assert c.status in (401, 403) and c.reason


def test_open_endpoint_anonymous_choice_is_401():
    c = check(None, access="open")
    assert c.status == 401 and "choosing a variant" in c.reason


def test_open_endpoint_deploy_token_without_infer_may_choose():
    assert check("sy_deploy_only", access="open") == Caller(True, True, "", 0, "vision")


# -- with a parsed table ------------------------------------------------------------------------------

def test_against_a_parsed_table():
    table = parse_table({
        "format": FORMAT, "version": 1, "generated_at": 0, "servers": [],
        "tokens": [{"team": "vision", "sha256": sha("sy_abc"), "scopes": ["infer", "deploy"], "expires_at": None}],
        "endpoints": [{"name": "vision.fraud-scorer", "team": "vision", "access": "token", "sticky": None,
                       "labels": {}, "variants": [], "shadow": None}],
    })
    ep = table.endpoints["vision.fraud-scorer"]
    assert check_access(ep, table.tokens, "Bearer sy_abc", NOW).may_choose_variant
    assert check_access(ep, table.tokens, "Bearer sy_abd", NOW).status == 401
