"""The generated Prometheus configuration and recording rules, checked by promtool."""
import json
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

from controlplane.devstack.prometheus import find_binary
from controlplane.metrics import series
from controlplane.metrics.config import render_config, render_files, write_files
from controlplane.metrics.rules import duration, render_rules, rule_groups

RULES_YML = Path(__file__).resolve().parents[2] / "controlplane" / "metrics" / "rules.yml"


def promtool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([find_binary("promtool"), *args], capture_output=True, text=True, timeout=60, check=False)


def test_shipped_rules_file_is_the_generated_one():
    assert RULES_YML.read_text() == render_rules(), "regenerate controlplane/metrics/rules.yml from rules.py"


@pytest.mark.parametrize("window", ["1m", "10s"])
def test_rules_pass_promtool_and_record_exactly_the_series_of_series_py(tmp_path, window):
    path = tmp_path / "rules.yml"
    path.write_text(render_rules(window=window))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    records = [r["record"] for g in rule_groups(window=window)["groups"] for r in g["rules"]]
    assert sorted(records) == sorted(s.name for s in series.ALL) and len(set(records)) == len(records)
    exprs = " ".join(r["expr"] for g in rule_groups(window=window)["groups"] for r in g["rules"])
    assert f"[{window}]" in exprs and "vector(0)" not in exprs


def test_rules_refuse_a_bad_window():
    for bad in ("1 m", "0s", "1m]) or vector(1", ""):
        with pytest.raises(ValueError):
            rule_groups(window=bad)
    assert duration(1.0) == "1s" and duration(1.5) == "1500ms" and duration(10) == "10s"
    for bad in (0.0, 0.0001, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            duration(bad)


def test_config_passes_promtool_with_the_intervals_from_settings(tmp_path, settings):
    settings.SWITCHYARD_PROMETHEUS_GATEWAY_SCRAPE_SECONDS = 2.5
    settings.SWITCHYARD_PROMETHEUS_TRITON_SCRAPE_SECONDS = 15
    files = render_files(switchyard_url='http://web:8000/"odd path"')
    write_files(tmp_path, files, token="sy_abc_def")
    checked = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load(files["prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    gateway, triton = jobs["switchyard_gateway"], jobs["switchyard_triton"]
    assert gateway["scrape_interval"] == "2500ms" and gateway["scrape_timeout"] == "2500ms"
    assert triton["scrape_interval"] == "15s" and triton["scrape_timeout"] == "10s"
    sd = gateway["http_sd_configs"][0]
    assert sd["url"] == 'http://web:8000/"odd path"/api/v1/metrics/targets/?kind=gateway'
    assert sd["refresh_interval"] == "5s"
    assert sd["authorization"] == {"type": "Bearer", "credentials_file": "switchyard.token"}
    assert triton["http_sd_configs"][0]["url"].endswith("?kind=triton")
    rules = yaml.safe_load(files["rules.yml"])
    assert [g["interval"] for g in rules["groups"]] == ["2500ms", "15s"]
    token = tmp_path / "switchyard.token"
    assert token.read_text() == "sy_abc_def\n" and stat.S_IMODE(token.stat().st_mode) == 0o600


def test_config_refuses_a_url_that_is_not_http():
    for bad in ("web:8000", "ftp://web", ""):
        with pytest.raises(ValueError):
            render_config(switchyard_url=bad)


def test_prometheus_config_command(tmp_path, capsys):
    call_command("prometheus_config", "--switchyard-url", "http://web:8000")
    out = capsys.readouterr().out
    assert yaml.safe_load(out)["rule_files"] == ["rules.yml"]
    call_command("prometheus_config", "--switchyard-url", "http://web:8000", "--rules", "--window", "30s")
    assert yaml.safe_load(capsys.readouterr().out) == rule_groups(window="30s")
    out_dir = tmp_path / "prom"
    call_command("prometheus_config", "--switchyard-url", "http://web:8000", "--out", str(out_dir))
    captured = capsys.readouterr()
    assert sorted(p.name for p in out_dir.iterdir()) == ["prometheus.yml", "rules.yml"]
    assert "put a read token of a platform admin in" in captured.err
    call_command("prometheus_config", "--switchyard-url", "http://web:8000", "--out", str(out_dir), "--token", "sy_t")
    assert (out_dir / "switchyard.token").read_text() == "sy_t\n"
    assert json.dumps(yaml.safe_load((out_dir / "rules.yml").read_text())) == json.dumps(rule_groups())
