"""The payload (Slack-compatible) and the URL rules: pure, no database."""
import datetime
import json
import math

import pytest

from controlplane.notifications import payload
from controlplane.notifications.validation import (
    events_canonical,
    events_problem,
    url_problem,
)

EVENTS = ["started", "paused", "rolled_back", "succeeded", "failed"]


def build(**overrides):
    args = {"event": "rolled_back", "title": "Deployment 7 rolled back", "team": "vision", "endpoint": "vision.fraud",
            "fields": {"deployment": 7, "blue": 3, "green": 4, "reason": "p99 above 250 ms"},
            "url": "https://switchyard.example.com/deployments/7/", "at": "2026-12-01T10:00:00+00:00"}
    args.update(overrides)
    return payload.build(**args)


def test_the_payload_is_slack_text_blocks_and_switchyard_data():
    body = build()
    assert body["text"] == "[vision.fraud] Deployment 7 rolled back"
    assert body["blocks"][0] == {"type": "section", "text": {"type": "mrkdwn", "text": "*Deployment 7 rolled back*\nvision.fraud · rolled back"}}
    assert body["blocks"][1]["fields"][3] == {"type": "mrkdwn", "text": "*reason*\np99 above 250 ms"}
    assert body["blocks"][2]["text"]["text"] == "<https://switchyard.example.com/deployments/7/|Open in Switchyard>"
    assert body["switchyard"] == {"deployment": 7, "blue": 3, "green": 4, "reason": "p99 above 250 ms",
                                  "event": "rolled_back", "team": "vision", "endpoint": "vision.fraud",
                                  "title": "Deployment 7 rolled back", "url": "https://switchyard.example.com/deployments/7/",
                                  "at": "2026-12-01T10:00:00+00:00"}
    assert all(block["type"] == "section" for block in body["blocks"])


def test_the_switchyard_names_win_over_fields_of_the_same_name():
    body = build(fields={"event": "forged", "team": "speech", "state": "baking"})
    assert (body["switchyard"]["event"], body["switchyard"]["team"], body["switchyard"]["state"]) == ("rolled_back", "vision", "baking")


def test_a_team_wide_event_names_the_team_and_has_no_link_without_a_url():
    body = build(endpoint=None, url="", fields={})
    assert body["text"] == "[vision] Deployment 7 rolled back"
    assert len(body["blocks"]) == 1 and body["switchyard"]["endpoint"] is None


def test_a_relative_url_is_shown_as_text_not_as_a_broken_link():
    body = build(url="/deployments/7/")
    assert body["blocks"][-1]["text"]["text"] == "In Switchyard: /deployments/7/"
    assert body["switchyard"]["url"] == "/deployments/7/"


def test_slack_control_characters_are_escaped_and_limits_kept():
    body = build(title="<!channel> & co", fields={f"f{i}": "x" * 5000 for i in range(25)})
    assert body["blocks"][0]["text"]["text"].startswith("*&lt;!channel&gt; &amp; co*")
    sections = [b for b in body["blocks"] if "fields" in b]
    assert [len(s["fields"]) for s in sections] == [10, 10, 5]
    assert all(len(f["text"]) <= 2000 for s in sections for f in s["fields"])
    assert body["switchyard"]["f0"] == "x" * 5000  # the machine-readable copy is whole


def test_fields_become_plain_storable_json_whatever_they_hold():
    when = datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.UTC)
    body = build(fields={"at_time": when, "ratio": math.nan, "nul": "a\x00b", "lone": "\ud800x", "versions": (3, 4),
                         "nested": {1: object}})
    data = body["switchyard"]
    assert data["at_time"] == "2026-12-01T10:00:00+00:00" and data["ratio"] == "nan" and data["nul"] == "ab"
    assert data["lone"] == "?x" and data["versions"] == [3, 4] and data["nested"] == {"1": "<class 'object'>"}
    json.dumps(body, allow_nan=False).encode("utf-8")  # strict JSON, encodable


@pytest.mark.parametrize("url", [
    "https://hooks.slack.com/services/T000/B000/XXXX",
    "http://127.0.0.1:8080/hook",  # loopback receivers are normal on-prem
    "http://chat-bridge:9000/switchyard",  # a single-label host
    "http://[::1]:8080/",
    "https://alerts.example.com./x?token=abc&y=1",
    "HTTPS://Example.COM/",
])
def test_good_urls(url):
    assert url_problem(url) is None


@pytest.mark.parametrize("url, words", [
    ("ftp://example.com/", "http"),
    ("file:///etc/passwd", "http"),
    ("example.com/hook", "http"),
    ("https://", "host"),
    ("https://user:pw@example.com/", "user:password"),
    ("https://example.com:99999/", "port"),
    ("https://example.com:0/", "port"),
    ("https://exa mple.com/", "spaces"),
    ("https://example.com/\n", "control"),
    ("https://bücher.example/", "punycode"),
    ("https://[::1/", "valid URL"),
    ("https://bad_host!/", "host name"),
    ("https://-x.example.com/", "host name"),
    ("https://" + "a" * 2000 + ".com/", "2000"),
    ("", "receiver"),
    (7, "string"),
])
def test_bad_urls_say_why(url, words):
    assert words in url_problem(url)


def test_events():
    assert events_problem(["failed", "started"], EVENTS) is None
    assert events_canonical(["failed", "started", "failed"], EVENTS) == ["started", "failed"]
    assert "at least one" in events_problem([], EVENTS)
    assert "Unknown event 'deployed'" in events_problem(["deployed"], EVENTS)
    assert "A list" in events_problem("failed", EVENTS)
    assert "A list" in events_problem([1], EVENTS)
