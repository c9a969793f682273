"""Templates carry no code: the CSP (script-src 'self', style-src 'self') would block it, and code
built from template variables is how user text became script (a token name in an onsubmit)."""
import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
COMMENTS = re.compile(r"{%\s*comment\s*%}.*?{%\s*endcomment\s*%}|{#.*?#}", re.S)
CHECKS = {
    "inline event handler": re.compile(r"(?<![\w:-])on[a-z]+\s*=", re.I),
    "htmx hx-on (evaluated code)": re.compile(r"(?<![\w-])(?:data-)?hx-on\b", re.I),
    "htmx hx-vars (evaluated code)": re.compile(r"(?<![\w-])(?:data-)?hx-vars\s*=", re.I),
    "javascript: URL": re.compile(r"javascript\s*:", re.I),
    "style attribute": re.compile(r"(?<![\w-])style\s*=", re.I),
    "inline <style> element": re.compile(r"<style\b", re.I),
}
SCRIPT_TAG = re.compile(r"<script\b[^>]*>", re.I)


def problems(text: str) -> list[str]:
    text = COMMENTS.sub("", text)
    found = [f"{what}: {m.group(0)!r}" for what, rx in CHECKS.items() for m in rx.finditer(text)]
    found += [f"inline <script>: {m.group(0)!r}" for m in SCRIPT_TAG.finditer(text) if not re.search(r"\ssrc\s*=", m.group(0))]
    return found


@pytest.mark.parametrize(
    "snippet",
    [
        """<form onsubmit="return confirm('Revoke {{ t.name }}?')">""",
        """<button type="button" ONCLICK='x()'>""",
        "<select name=v onchange=go()>",
        "<script>alert(1)</script>",
        '<script type="module">import "x"</script>',
        '<a href="JavaScript:void(0)">',
        '<span style="width: 5%">',
        "<style>p { color: red }</style>",
        '<div hx-on:click="go()">',
        '<div hx-vars="a: 1">',
    ],
)
def test_the_scan_catches_inline_code(snippet):
    assert problems(snippet)


@pytest.mark.parametrize(
    "snippet",
    [
        '<script src="/static/js/switchyard.js" defer></script>',
        '<form data-confirm="Remove {{ m }}?"><button data-open-dialog="move-x">',
        '<span class="quota-seg" data-width="12.5">',
        "{# an onclick=\"x()\" in a comment is no code #}",
        "<p>Drop it on the floor; the pony= is fine</p>",
    ],
)
def test_the_scan_lets_plain_markup_through(snippet):
    assert problems(snippet) == []


def test_no_template_has_inline_code():
    files = sorted(p for p in TEMPLATES.rglob("*") if p.is_file())
    assert len(files) > 20  # the scan sees the real templates
    found = {str(p.relative_to(TEMPLATES)): problems(p.read_text()) for p in files}
    assert {name: p for name, p in found.items() if p} == {}
