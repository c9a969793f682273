"""The JSON a webhook receives: Slack-compatible, with Switchyard's own data beside it. Pure.

``text`` is the one-line summary (Slack's notification and fallback text), ``blocks`` a few
plain section blocks, and ``switchyard`` the machine-readable copy that other receivers use:
``{"event", "team", "endpoint", "title", "url", "at", **fields}`` (those names win over a field
of the same name). Slack ignores the extra key.
"""
from __future__ import annotations

import json
import math

MAX_SECTION_TEXT = 3000  # Slack: a section's text
MAX_FIELD_TEXT = 2000  # Slack: one field of a section
FIELDS_PER_SECTION = 10  # Slack: fields of one section
MAX_FIELDS = 40  # keep the message readable (and under Slack's 50 blocks)

EVENT_WORDS = {
    "started": "started", "paused": "paused", "rolled_back": "rolled back", "succeeded": "succeeded",
    "failed": "failed", "test": "test",
}


def _text(value: str) -> str:
    """Storable text (PostgreSQL's jsonb refuses NUL and lone surrogates)."""
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def plain(value):
    """``value`` as plain, storable JSON: datetimes as ISO 8601, NaN and other objects as text.
    Never raises, so a notification cannot break the transaction that sends it."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_text(str(k)): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    iso = getattr(value, "isoformat", None)
    return _text(iso() if callable(iso) else str(value))


def _escape(text: str) -> str:
    """Slack's mrkdwn control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def build(*, event: str, title: str, team: str, endpoint: str | None, fields: dict, url: str, at: str) -> dict:
    """The payload. ``team`` is the team's slug, ``endpoint`` the endpoint's public name (or None),
    ``at`` the ISO 8601 time of the event."""
    fields = plain(dict(fields))
    title = _text(str(title)).replace("\n", " ").strip() or EVENT_WORDS.get(event, event)
    url = _text(str(url or ""))
    where = endpoint or team
    text = _cut(f"[{where}] {title}", MAX_SECTION_TEXT)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": _cut(
        f"*{_escape(title)}*\n{_escape(where)} · {EVENT_WORDS.get(event, event)}", MAX_SECTION_TEXT)}}]
    shown = [{"type": "mrkdwn", "text": _cut(f"*{_escape(name)}*\n{_escape(_shown(value))}", MAX_FIELD_TEXT)}
             for name, value in list(fields.items())[:MAX_FIELDS]]
    for start in range(0, len(shown), FIELDS_PER_SECTION):
        blocks.append({"type": "section", "fields": shown[start:start + FIELDS_PER_SECTION]})
    if url.startswith(("http://", "https://")):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{_escape(url).replace('|', '%7C')}|Open in Switchyard>"}})
    elif url:  # a path: Switchyard does not know the address people reach it at, so no link
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(f"In Switchyard: {_escape(url)}", MAX_SECTION_TEXT)}})
    data = {**fields, "event": event, "team": team, "endpoint": endpoint, "title": title, "url": url, "at": at}
    return {"text": text, "blocks": blocks, "switchyard": data}
