"""A real Prometheus whose recorded series are fixed values with chosen labels, for the query
builder's and the client's tests: recording rules with static `labels:` give series whose label
values are any text (hostile ones included) without a scrape. Not a test module."""
from __future__ import annotations

import time
from pathlib import Path

import yaml

from controlplane.devstack.prometheus import PrometheusServer, start_prometheus

RULE_INTERVAL = "1s"


def rule(record: str, value: float, **labels: str) -> dict:
    return {"record": record, "expr": f"vector({value!r})", "labels": labels}


def start_static_prometheus(tmp: Path, rules: list[dict]) -> PrometheusServer:
    """Prometheus evaluating `rules` every second; returns once every record has a value."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "static", "interval": RULE_INTERVAL, "rules": rules}]},
                                                  allow_unicode=True))
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": RULE_INTERVAL},
        "rule_files": ["rules.yml"],
    }))
    server = start_prometheus(config_dir=tmp, log_dir=tmp)
    names = {r["record"] for r in rules}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = {v["metric"]["__name__"] for v in server.query('{__name__=~"switchyard.+"}')}
        if names <= found:
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"the static rules did not record {sorted(names - found)} in time")
