"""Custom gate queries: their placeholders filled, and a check that they read only the deployment's
own series. Pure: no ORM, no I/O.

Prometheus answers any query about any series, so a custom gate could read another team's
numbers (and its stored evaluations would show them). A custom gate is therefore kept to its own
deployment: every vector selector in it must pin ``endpoint`` to the endpoint's public name or
``model`` to the model's Triton name, with an equality matcher. Both names begin with the team's
slug, so one team's pinned selectors never match another team's series. Series with neither label
(``up``, node metrics) are out of a custom gate's reach.

The check reads PromQL with a small lexer: strings, comments, ranges and label lists after
``by``/``without``/``on``/``ignoring``/``group_left``/``group_right`` are skipped; an identifier
followed by ``(`` is a function or an aggregation; any other identifier, or a ``{`` on its own,
starts a selector.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from controlplane.metrics.queries import quote

PLACEHOLDERS = ("{{endpoint}}", "{{model}}", "{{variant}}", "{{window}}")
# Stand-ins for checking a query before its deployment exists: a selector pinned with a placeholder
# carries them; one pinned by hand to any real name does not, and is refused.
CHECK_ENDPOINT, CHECK_MODEL = "endpoint.placeholder", "model.placeholder"

_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
             # aggregations, which may come before their label list: sum by (le) (...)
             "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
             "topk", "quantile", "limitk", "limit_ratio"}
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)[A-Za-z0-9]*")
_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*")


class Unreadable(ValueError):
    """The query is not PromQL this check can read (an unclosed string, bracket or brace)."""


@dataclass(frozen=True)
class Selector:
    text: str  # as written, for the error message
    pinned: bool


def fill(template: str, *, endpoint: str, model: str, variant: str, window_s: int) -> str:
    """The query Prometheus runs: each placeholder replaced by its value, quoted safely."""
    return (template.replace("{{endpoint}}", quote(endpoint)).replace("{{model}}", quote(model))
            .replace("{{variant}}", quote(variant)).replace("{{window}}", f"{window_s}s"))


def unpinned(query: str, *, endpoint: str, model: str) -> list[str]:
    """The selectors of a filled ``query`` that are pinned to neither ``endpoint`` nor ``model``,
    as written. Raises Unreadable."""
    return [s.text for s in _selectors(query, endpoint=endpoint, model=model) if not s.pinned]


def is_pinned(query: str, *, endpoint: str, model: str) -> bool:
    """Whether a filled ``query`` reads only series pinned to ``endpoint`` or ``model`` (a query
    that cannot be read is not)."""
    try:
        return not unpinned(query, endpoint=endpoint, model=model)
    except Unreadable:
        return False


def problem(template: str) -> str:
    """Why a custom gate's query cannot be accepted, or "" (checked with stand-in names)."""
    query = fill(template, endpoint=CHECK_ENDPOINT, model=CHECK_MODEL, variant="green", window_s=60)
    try:
        loose = unpinned(query, endpoint=CHECK_ENDPOINT, model=CHECK_MODEL)
    except Unreadable as exc:
        return f"Cannot read this PromQL: {exc}."
    if not loose:
        return ""
    shown = ", ".join(t.replace(quote(CHECK_ENDPOINT), "{{endpoint}}").replace(quote(CHECK_MODEL), "{{model}}")
                      for t in loose[:3])
    return ("A custom gate reads only this deployment's series: pin every selector with "
            f"endpoint={{{{endpoint}}}} or model={{{{model}}}} (not pinned: {shown}).")


def _string_end(text: str, i: int) -> int:
    """The index just past the string literal that starts at ``i``."""
    quote_char = text[i]
    j = i + 1
    while j < len(text):
        if text[j] == "\\" and quote_char != "`":
            j += 2
            continue
        if text[j] == quote_char:
            return j + 1
        j += 1
    raise Unreadable("a string is not closed")


def _closing(text: str, i: int, opening: str, closing: str) -> int:
    """The index just past the bracket that closes the one at ``i`` (strings inside skipped)."""
    depth, j = 0, i
    while j < len(text):
        ch = text[j]
        if ch in "\"'`":
            j = _string_end(text, j)
            continue
        if ch == opening:
            depth += 1
        elif ch == closing:
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    raise Unreadable(f"a {opening!r} is not closed")


def _unquote(literal: str) -> str:
    if literal[0] == "`":
        return literal[1:-1]
    if literal[0] == "'":
        literal = '"' + literal[1:-1].replace('\\\'', "'").replace('"', '\\"') + '"'
    try:
        return json.loads(literal)
    except ValueError:
        return literal[1:-1]


def _is_pinned(body: str, *, endpoint: str, model: str) -> bool:
    """Whether a selector's matcher list (between its braces) is plain ``label op "value"``
    matchers, one of them endpoint="…" or model="…" equal to ours. Anything else in the list (an
    ``or`` between matchers, a quoted label name) leaves it unpinned: only a conjunction pins."""
    pinned, i, first = False, 0, True
    while i < len(body):
        if body[i] in " \t\r\n,":
            i += 1
            continue
        if first and body[i] in "\"'`":  # {"metric.name", ...}: a quoted metric name first
            i, first = _string_end(body, i), False
            continue
        first = False
        m = _MATCHER.match(body, i)
        if not m or m.end() >= len(body) or body[m.end()] not in "\"'`":
            return False
        end = _string_end(body, m.end())
        label, op, value = m.group(1), m.group(2), _unquote(body[m.end():end])
        pinned = pinned or (op == "=" and ((label == "endpoint" and value == endpoint) or
                                           (label == "model" and value == model)))
        i = end
    return pinned


def _selectors(query: str, *, endpoint: str, model: str) -> list[Selector]:
    found: list[Selector] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
        elif ch == "#":
            end = query.find("\n", i)
            i = n if end < 0 else end + 1
        elif ch in "\"'`":
            i = _string_end(query, i)
        elif ch == "[":
            i = _closing(query, i, "[", "]")
        elif ch == "{":
            end = _closing(query, i, "{", "}")
            found.append(Selector(query[i:end], _is_pinned(query[i + 1:end - 1], endpoint=endpoint, model=model)))
            i = end
        elif (m := _NUMBER.match(query, i)) and (ch.isdigit() or ch == "."):
            i = m.end()
        elif m := _IDENT.match(query, i):
            word, i = m.group(0), m.end()
            rest = query[i:].lstrip()
            after = i + (len(query[i:]) - len(rest))
            if word.lower() in _LABEL_LISTS:
                if rest.startswith("("):
                    i = _closing(query, after, "(", ")")
            elif rest.startswith("(") or word.lower() in _KEYWORDS:
                pass  # a function, an aggregation or an operator
            elif rest.startswith("{"):
                end = _closing(query, after, "{", "}")
                found.append(Selector(query[m.start():end],
                                      _is_pinned(query[after + 1:end - 1], endpoint=endpoint, model=model)))
                i = end
            else:
                found.append(Selector(word, False))
        else:
            i += 1
    return found
