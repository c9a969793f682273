"""JSON that the rest of Switchyard can walk and PostgreSQL can store.

One check for API bodies, JSON sent in form fields and the UI's JSON text areas: nesting is
bounded (Python's json raises RecursionError around 1,000 levels, and every later walk of the
value recurses too); no NUL and no unpaired surrogate (PostgreSQL text and jsonb cannot hold
them, and psycopg raises); no infinite or NaN numbers (jsonb has none; ``1e400`` parses as inf).
"""
import json
import math
import re

MAX_DEPTH = 32
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:]')
_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONRefused(ValueError):
    """Parsed, but not storable. ``path`` names the field, such as ``metadata.note``."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "Contains a NUL character (\\u0000), which cannot be stored."
    if _SURROGATE.search(value):
        return "Contains an unpaired surrogate (\\ud800-\\udfff), which is not valid Unicode."
    return None


def _join(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def check(value, path: str = "") -> None:
    """Raise JSONRefused for the first unstorable part of ``value``. A path of "" is the body:
    errors are then keyed by its top-level field. Iterative, so any depth is safe to walk."""
    stack = [(value, path, 0, path)]
    while stack:
        item, where, depth, top = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                raise JSONRefused(top or "body", f"JSON is nested too deep (more than {MAX_DEPTH} levels).")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str) and (problem := text_problem(key)):
                    raise JSONRefused(where or "body", f"A key {problem[0].lower()}{problem[1:]}")
                child_path = _join(where, key)
                stack.append((child, child_path, depth + 1, top or child_path))
        elif isinstance(item, str):
            if problem := text_problem(item):
                raise JSONRefused(where or "body", problem)
        elif isinstance(item, float) and not math.isfinite(item):
            raise JSONRefused(where or "body", "The number is out of range.")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON.")


def loads(text: str | bytes, path: str = ""):
    """json.loads, then check(). Malformed JSON raises a plain ValueError (json's own message);
    valid but unstorable JSON raises JSONRefused."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise JSONRefused(path or _deep_field(text) or "body",
                          f"JSON is nested too deep (more than {MAX_DEPTH} levels).") from None
    check(value, path)
    return value


def _deep_field(text: str | bytes) -> str | None:
    """The top-level key under which ``text`` first nests too deep (only called on failure)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    depth, key, string = 0, None, None
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return key
        elif token in "]}":
            depth -= 1
        elif token == ":":
            if depth == 1 and string is not None:
                key = json.loads(string)
        string = token if token.startswith('"') else None
    return key
