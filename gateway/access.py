"""Who may call an endpoint through the gateway: a pure decision on the routing table's tokens.

The table carries only SHA-256 hashes of the data-plane tokens, by team. A bearer token is hashed
and looked up in a dict. No constant-time comparison is needed: the lookup compares hashes, and an
attacker who learns how many leading characters of a hash matched learns nothing about a token
that hashes to it (a preimage would still be needed).
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.table import Endpoint, Token

CHOOSE_SCOPES = frozenset({"deploy", "admin"})


@dataclass(frozen=True, slots=True)
class Caller:
    """What the caller may do on one endpoint.

    `status` and `reason` describe the first thing refused: inference if `may_infer` is False,
    otherwise choosing a variant (use them only if the request asked for one). 401 means no
    usable credential (none, unknown, malformed or expired); 403 means a valid token that may
    not do it (another team's, or without the scope). Both are 0 / "" when everything is allowed.
    """

    may_infer: bool
    may_choose_variant: bool
    reason: str
    status: int
    team: str | None = None  # the token's team when one was recognised, for logs and metrics


def check_access(endpoint: Endpoint, tokens: Mapping[str, Token], authorization: str | None, now: float) -> Caller:
    """Decide from the Authorization header. An open endpoint serves anyone, whatever token comes
    with the request (a stale token does not break a trusted-network client); only a valid token of
    the endpoint's team with the deploy or admin scope may choose the variant."""
    open_ = endpoint.access == "open"
    token, problem = _token(tokens, authorization, now)
    if token is None:
        reason = f"{problem}: endpoint '{endpoint.name}' requires a bearer token"
        if open_:
            return Caller(True, False, f"{problem}: choosing a variant requires a bearer token", 401)
        return Caller(False, False, reason, 401)

    if token.team != endpoint.team:
        reason = f"the token is not valid for endpoint '{endpoint.name}' (another team's)"
        return Caller(open_, False, reason, 403, token.team)

    may_infer = open_ or "infer" in token.scopes
    may_choose = bool(token.scopes & CHOOSE_SCOPES)
    if not may_infer:
        return Caller(False, may_choose, f"the token lacks the 'infer' scope for endpoint '{endpoint.name}'", 403, token.team)
    if not may_choose:
        return Caller(True, False, "choosing a variant requires a token with the 'deploy' or 'admin' scope", 403, token.team)
    return Caller(True, True, "", 0, token.team)


def _token(tokens: Mapping[str, Token], authorization: str | None, now: float) -> tuple[Token | None, str]:
    if not authorization:
        return None, "no token"
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        return None, "malformed Authorization header (expected 'Bearer <token>')"
    digest = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
    token = tokens.get(digest)
    if token is None:
        return None, "unknown token"
    if token.expires_at is not None and token.expires_at <= now:
        return None, "expired token"
    return token, ""
