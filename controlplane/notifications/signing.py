"""Webhook signatures. Pure standard library, so a receiver can copy this file as it is.

Each delivery carries::

    X-Switchyard-Timestamp: 1767225600                  (Unix seconds when it was sent)
    X-Switchyard-Signature: sha256=<hex>                (HMAC-SHA256, key: the webhook's secret)

and the HMAC covers ``f"{timestamp}.".encode() + body``, the body being the exact bytes received.
A receiver recomputes it over the raw body (before any JSON parsing) and refuses old timestamps,
so that a captured delivery cannot be replayed later::

    ok = verify_signature(secret, request.headers["X-Switchyard-Timestamp"], raw_body,
                          request.headers["X-Switchyard-Signature"])

The same delivery may arrive more than once (retries are at-least-once): deduplicate on
``X-Switchyard-Delivery``.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SCHEME = "sha256"
SECRET_START = "whsec_"


def generate_secret() -> str:
    """A new webhook secret: 32 random bytes, URL-safe, with a recognisable prefix."""
    return f"{SECRET_START}{secrets.token_urlsafe(32)}"


def _bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def sign(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """The header value ``sha256=<hex>`` for ``body`` sent at ``timestamp``."""
    message = _bytes(str(timestamp)) + b"." + _bytes(body)
    return f"{SCHEME}=" + hmac.new(_bytes(secret), message, hashlib.sha256).hexdigest()


def verify_signature(secret: str, timestamp: int | str, body: bytes | str, signature: str, *,
                     tolerance_s: float = 300, now: float | None = None) -> bool:
    """Whether ``signature`` (the X-Switchyard-Signature header) was made with ``secret`` over this
    exact ``body`` and ``timestamp`` (the X-Switchyard-Timestamp header), and the timestamp is
    within ``tolerance_s`` seconds of ``now`` (default: the clock). Never raises on bad input."""
    try:
        sent = int(str(timestamp).strip())
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance_s:
        return False
    if not isinstance(signature, str) or not signature.startswith(f"{SCHEME}="):
        return False
    try:
        expected = sign(secret, sent, body)
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(expected.encode(), signature.strip().encode("utf-8", "replace"))
