"""The Grafana dashboard (deploy/grafana/switchyard.json) is built on the recorded series only:
every expression names series from series.py, all of them are shown, and a real Prometheus
parses every expression."""
import json
import re
from pathlib import Path

import pytest

from controlplane.metrics import series as S
from controlplane.metrics.client import PrometheusClient, PrometheusError
from tests.metrics.static_prometheus import rule, start_static_prometheus

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "switchyard.json"
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NUMBERS_AND_RANGES = re.compile(r"\[[^\]]*\]|(?<![A-Za-z0-9_:])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_VALUES = re.compile(r"^label_values\((?P<metric>[A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*[A-Za-z_][A-Za-z0-9_]*\)$")


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def expressions(dash: dict) -> list[str]:
    found = []
    for panel in dash["panels"]:
        found += [t["expr"] for t in panel.get("targets", [])]
        for inner in panel.get("panels", []):
            found += [t["expr"] for t in inner.get("targets", [])]
    return found


def variable_queries(dash: dict) -> list[str]:
    return [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]


def metric_names(expr: str) -> set[str]:
    """The series an expression selects: identifiers that are neither functions, keywords, label
    names (inside matchers and groupings) nor numbers."""
    text = _NUMBERS_AND_RANGES.sub(" ", _MATCHERS.sub(" ", _GROUPING.sub(" ", _STRING.sub('""', expr))))
    names = set()
    for match in _IDENT.finditer(text):
        rest = text[match.end():].lstrip()
        if rest.startswith("(") or match.group().lower() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def test_the_name_extraction_itself():
    assert metric_names('sum by (variant) (a:b:c{x="y{z}"}) / on (x) rate(d_total[1m]) or vector(1) * 1e6') == {"a:b:c", "d_total"}
    assert metric_names("up2 / 2.5e-3") == {"up2"}


def test_every_expression_names_recorded_series_only_and_all_of_them_appear():
    dash = dashboard()
    recorded = {s.name for s in S.ALL}
    used: set[str] = set()
    exprs = expressions(dash)
    assert len(exprs) >= 15
    for expr in exprs:
        names = metric_names(expr)
        assert names and names <= recorded, f"{expr!r} names {sorted(names - recorded)}"
        assert "vector(0)" not in expr.replace(" ", "")  # absent stays absent
        used |= names
    for query in variable_queries(dash):
        match = _LABEL_VALUES.match(query)
        assert match and match.group("metric") in recorded, query
    assert used == recorded, f"not on the dashboard: {sorted(recorded - used)}"


def test_the_dashboard_is_importable():
    dash = dashboard()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"] == "switchyard"
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}  # no hard-wired data source
    names = {v["name"] for v in dash["templating"]["list"]}
    assert names == {"datasource", "endpoint", "model", "server"}
    for expr in expressions(dash):
        assert set(re.findall(r"\$(\w+)", expr)) <= names


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    server = start_static_prometheus(tmp_path_factory.mktemp("prom-grafana"), [rule(S.FLEET_REQUESTS.name, 1.0)])
    yield PrometheusClient(server.url, timeout=5)
    server.stop()


def test_prometheus_parses_every_expression(prom):
    for expr in expressions(dashboard()):
        concrete = re.sub(r"\$\w+", ".*", expr)  # what Grafana sends for "All"
        try:
            prom.query(concrete)
        except PrometheusError as exc:  # pragma: no cover - the message names the expression
            pytest.fail(f"{expr}: {exc.message}")
