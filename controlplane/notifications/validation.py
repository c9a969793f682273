"""What a webhook's URL and event list may be. Pure: no Django, no I/O.

Any http(s) URL is allowed, loopback and private addresses included: Switchyard runs on-prem,
where the receiver (a chat bridge, an incident tool) usually sits on the same network. Operators
who need egress rules enforce them in the network, not here.
"""
from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

MAX_URL = 2000
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def url_problem(value) -> str | None:
    """Why ``value`` cannot be a webhook URL, or None when it can. Receivers are called exactly at
    this URL (no redirects are followed), so it must be complete and ASCII as sent on the wire."""
    if not isinstance(value, str):
        return "Must be a string."
    if not value:
        return "Give the receiver's URL, such as https://hooks.example.com/switchyard."
    if len(value) > MAX_URL:
        return f"At most {MAX_URL} characters."
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in value):
        return "No spaces or control characters; percent-encode non-ASCII characters (and use the punycode form of the host)."
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # such as a bad [IPv6] literal
        return f"Not a valid URL: {exc}."
    try:
        port = parts.port
    except ValueError:
        port = 0
    if parts.scheme.lower() not in ("http", "https"):
        return "Only http:// and https:// URLs."
    if not parts.netloc:
        return "Give a host, such as https://hooks.example.com/switchyard."
    if "@" in parts.netloc:
        return "No user:password@ in the URL: put a token in the path or query, or check the signature on the receiver."
    if port == 0:
        return "The port must be from 1 to 65535."
    host = parts.hostname or ""
    if not _host_ok(host, bracketed="[" in parts.netloc):
        return f"{host or 'The host'} is not a host name or an IP address."
    return None


def _host_ok(host: str, *, bracketed: bool) -> bool:
    if bracketed:
        try:
            return ipaddress.ip_address(host.split("%", 1)[0]).version == 6
        except ValueError:
            return False
    name = host.removesuffix(".")
    if not name or len(name) > 253:
        return False
    return all(_LABEL.fullmatch(label) for label in name.split("."))


def events_problem(value, allowed: list[str]) -> str | None:
    """Why ``value`` cannot be a webhook's event list, or None when it can."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(e, str) for e in value):
        return f"A list of events from: {', '.join(allowed)}."
    if not value:
        return "Choose at least one event; to stop notifications, set active to false."
    unknown = [e for e in value if e not in allowed]
    if unknown:
        return f"Unknown event {unknown[0]!r}; choose from: {', '.join(allowed)}."
    return None


def events_canonical(value, allowed: list[str]) -> list[str]:
    """The events in their usual order, each once."""
    return [e for e in allowed if e in value]
