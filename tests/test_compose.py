"""docker-compose.yml cannot run here (no Docker engine), so check that it points at real code
and sets only the variables the settings read."""
import importlib
import re
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

from controlplane.env import Env

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
BOTO3_VARS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}


def test_expected_services_exist():
    assert {"postgres", "redis", "minio", "web", "worker", "beat", "triton-1", "triton-2"} <= set(SERVICES)


def test_web_runs_gunicorn_on_the_real_wsgi_app():
    command = SERVICES["web"]["command"]
    assert command[0] == "gunicorn"
    module, attr = command[1].split(":")
    assert callable(getattr(importlib.import_module(module), attr))


@pytest.mark.parametrize("service, kind", [("worker", "worker"), ("beat", "beat")])
def test_celery_services_use_the_real_app(service, kind):
    command = SERVICES[service]["command"]
    assert command[:2] == ["celery", "-A"] and kind in command
    app = importlib.import_module(command[2]).celery_app
    assert "fleet.probe_fleet" in {entry["task"] for entry in app.conf.beat_schedule.values()}
    app.loader.import_default_modules()
    assert "fleet.probe_fleet" in app.tasks and "fleet.probe_server" in app.tasks


def test_migrate_is_a_real_management_command():
    command = SERVICES["migrate"]["command"]
    assert command[:2] == ["python", "manage.py"] and command[2] in get_commands()


def test_app_environment_matches_settings():
    for name in ("web", "worker", "beat", "migrate"):
        env = SERVICES[name]["environment"]
        unknown = set(env) - Env.names - BOTO3_VARS
        assert not unknown, f"{name} sets variables the settings never read: {unknown}"
        assert {"DATABASE_URL", "REDIS_URL", "SWITCHYARD_SECRET_KEY", "SWITCHYARD_S3_BUCKET"} <= set(env)
        assert BOTO3_VARS <= set(env)
        assert env["DATABASE_URL"].startswith("postgres://") and env["REDIS_URL"].startswith("redis://")


def test_tritons_use_the_app_bucket_with_explicit_control_and_gpus():
    env = SERVICES["web"]["environment"]
    repository = f"--model-repository=s3://minio:9000/{env['SWITCHYARD_S3_BUCKET']}/{env['SWITCHYARD_S3_PREFIX']}"
    for name in ("triton-1", "triton-2"):
        service = SERVICES[name]
        assert repository in service["command"]
        assert "--model-control-mode=explicit" in service["command"]
        assert any(re.match(r"--metrics-config=summary_latencies=true", c) for c in service["command"])
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices and all("gpu" in d["capabilities"] for d in devices)
        assert set(service["environment"]) == BOTO3_VARS


def test_dockerfile_installs_the_project():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install" in dockerfile and "collectstatic" in dockerfile


def test_gateway_service_runs_the_real_gateway_against_web():
    """The gateway's command is the `switchyard` script's; its flags are ones gateway.server
    accepts, its key is the one web checks, and web accepts the Host it calls with."""
    import tomllib

    from gateway.server import build_parser

    service = SERVICES["gateway"]
    command = service["command"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[:2] == ["switchyard", "gateway"] and scripts["switchyard"] == "cli.main:main"
    args = build_parser().parse_args(command[2:])
    assert args.control_plane == "http://web:8000" and args.workers >= 1
    assert service["environment"]["SWITCHYARD_GATEWAY_KEY"] == SERVICES["web"]["environment"]["SWITCHYARD_GATEWAY_KEY"]
    assert service["environment"]["REDIS_URL"] == SERVICES["web"]["environment"]["REDIS_URL"]
    assert SERVICES["web"]["environment"]["SWITCHYARD_ALLOWED_HOSTS"].endswith(",web")
    assert "v2/health/ready" in " ".join(service["healthcheck"]["test"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY gateway ./gateway" in dockerfile and "COPY cli ./cli" in dockerfile


def test_prometheus_service_runs_the_generated_config_discovering_from_web():
    """prometheus-config writes the config with the real command and flags into the volume the
    prometheus service reads, pointed at web (which accepts that Host); web and the workers query it."""
    import shlex

    from django.core.management import load_command_class

    from controlplane.metrics.config import CONFIG_FILE

    writer, prometheus = SERVICES["prometheus-config"], SERVICES["prometheus"]
    shell = writer["command"]
    assert shell[:2] == ["sh", "-c"]
    words = shlex.split(shell[2])
    manage = words[:words.index("&&")]
    assert manage[:3] == ["python", "manage.py", "prometheus_config"]
    command = load_command_class(get_commands()["prometheus_config"], "prometheus_config")
    options = command.create_parser("manage.py", "prometheus_config").parse_args(manage[3:])
    assert options.switchyard_url == "http://web:8000"
    assert SERVICES["web"]["environment"]["SWITCHYARD_ALLOWED_HOSTS"].endswith(",web")
    volume = f"{options.out.split(':')[0]}"
    assert f"prometheus-config:{volume}" in writer["volumes"]
    assert f"prometheus-config:{volume}:ro" in prometheus["volumes"]
    assert f"--config.file={volume}/{CONFIG_FILE}" in prometheus["command"]
    assert prometheus["image"].startswith("prom/prometheus:v2.")
    assert any(a.startswith("--storage.tsdb.retention.time=") for a in prometheus["command"])
    assert prometheus["depends_on"]["prometheus-config"]["condition"] == "service_completed_successfully"
    assert set(writer["environment"]) - Env.names - BOTO3_VARS == {"SWITCHYARD_PROMETHEUS_TOKEN"}
    for name in ("web", "worker", "beat"):
        assert SERVICES[name]["environment"]["SWITCHYARD_PROMETHEUS_URL"] == "http://prometheus:9090"
    assert "SWITCHYARD_PROMETHEUS_URL" in Env.names
