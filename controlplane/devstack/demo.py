"""`make demo`: Switchyard on embedded defaults, from a fresh state each run.

Starts moto's S3 server, three real tritonservers on it, Prometheus (Debian's package; it
discovers the servers and the gateway from the web server), a Celery worker and beat (on a
filesystem broker unless REDIS_URL is set), the web server on SQLite and the inference gateway;
seeds a demo team, models, versions, servers and an endpoint; sends steady traffic to that
endpoint through the gateway (controlplane.devstack.loadgen); prints the URLs, the login and a
first rollout to try; stops everything on Ctrl-C.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from controlplane import devstack
from controlplane.devstack.loadgen import DEFAULT_RATE, RATE_ENV
from controlplane.devstack.prometheus import PrometheusSetupError, start_prometheus
from controlplane.devstack.s3 import ensure_bucket, start_s3_server
from controlplane.devstack.triton import start_triton_server

ROOT = Path(__file__).resolve().parents[2]
VAR = Path(os.environ.get("SWITCHYARD_VAR_DIR", ROOT / "var" / "demo"))
BUCKET = "switchyard-demo"
PREFIX = "repo"
USERNAME, PASSWORD = "admin", "switchyard-demo"
TRITON_COUNT = 3
ENDPOINT = "vision.fraud-scorer"


def rollout_howto(url: str) -> str:
    """What a newcomer can try first: a canary to the good v3, then one to the bad v4."""
    return (
        "\nTry a rollout (the endpoint serves v2; the charts show the load generator's traffic within a minute):\n"
        f"  1. Open {url}deployments/ and plan a deployment of {ENDPOINT}: version 3 (or label canary),\n"
        "     strategy canary at 25% with a 60 s bake; Preview plan, then Start deployment.\n"
        "  2. On the deployment's page watch blue (v2) against green (v3): latency, throughput, errors,\n"
        "     the gates' values against their limits. Let the gates promote it, or click Promote.\n"
        "  3. Then try version 4, which fails every second request: within seconds the gateway's guard\n"
        "     stops sending to it and the page shows rolling_back, then rolled_back, on its own.\n"
    )


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def main() -> int:
    started = time.monotonic()
    if VAR.exists():
        shutil.rmtree(VAR)  # moto keeps nothing, so the database starts fresh with it
    logs = VAR / "logs"
    logs.mkdir(parents=True)

    say("starting local S3 (moto)")
    s3 = start_s3_server(log_dir=logs)
    ensure_bucket(s3.client(), BUCKET)

    say(f"starting {TRITON_COUNT} tritonservers (explicit model control, S3 repository)")
    repository = f"s3://{s3.host_port}/{BUCKET}/{PREFIX}"
    tritons = [
        start_triton_server(name=f"triton-{i + 1}", repository=repository, s3=s3, work_dir=VAR / f"triton-{i + 1}")
        for i in range(TRITON_COUNT)
    ]

    env = dict(os.environ)
    env.update(s3.env())
    env.update(
        {
            "SWITCHYARD_DEBUG": "true",
            "SWITCHYARD_VAR_DIR": str(VAR),
            "SWITCHYARD_S3_ENDPOINT_URL": s3.endpoint_url,
            "SWITCHYARD_S3_BUCKET": BUCKET,
            "SWITCHYARD_S3_PREFIX": PREFIX,
            "SWITCHYARD_PROBE_INTERVAL_SECONDS": env.get("SWITCHYARD_PROBE_INTERVAL_SECONDS", "10"),
            # Shared by web and the gateway for the routing table; new each run, like the data.
            "SWITCHYARD_GATEWAY_KEY": secrets.token_urlsafe(32),
            "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        }
    )
    # The demo always runs on SQLite under VAR. Web, two worker processes and beat write to it at
    # once: WAL lets readers go on beside a writer, and IMMEDIATE transactions with a busy timeout
    # queue the writers (a deferred transaction that upgrades to a write fails at once with
    # "database is locked", whatever the timeout).
    env["DATABASE_URL"] = (f"sqlite:///{VAR / 'switchyard.sqlite3'}?timeout=30&transaction_mode=IMMEDIATE"
                           "&init_command=PRAGMA%20journal_mode%3DWAL")
    python = sys.executable
    manage = [python, str(ROOT / "manage.py")]

    say("migrating the SQLite database")
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True)
    say("seeding the demo team, models, versions and servers")
    servers = ",".join(f"triton-{i + 1}={t.http_url}|{t.grpc_url}|{t.metrics_url}" for i, t in enumerate(tritons))
    prometheus_dir = VAR / "prometheus"
    subprocess.run([*manage, "seed_demo", "--servers", servers, "--password", PASSWORD,
                    "--prometheus-token-file", str(prometheus_dir / "switchyard.token")], env=env, cwd=ROOT, check=True)

    port = int(os.environ.get("SWITCHYARD_DEMO_PORT", "8000"))
    if not devstack.port_is_free(port):
        port = devstack.free_ports(1)[0]
    url = f"http://127.0.0.1:{port}/"

    say("starting Prometheus (discovers the fleet and the gateway from the web server)")
    subprocess.run([*manage, "prometheus_config", "--switchyard-url", url.rstrip("/"), "--out", str(prometheus_dir)],
                   env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    try:
        prometheus = start_prometheus(config_dir=prometheus_dir, log_dir=logs)
        env["SWITCHYARD_PROMETHEUS_URL"] = prometheus.url
        prometheus_line = f"  Prometheus: {prometheus.url}  (targets: {prometheus.url}/targets)\n"
    except PrometheusSetupError as e:
        # Switchyard runs without Prometheus (no charts); say how to get it.
        print(f"warning: running without Prometheus. {e}", file=sys.stderr, flush=True)
        env["SWITCHYARD_PROMETHEUS_URL"] = ""
        prometheus_line = "  Prometheus: not running (install Debian's prometheus package for metrics)\n"
    say("starting the Celery worker, beat and the web server")
    celery = [python, "-m", "celery", "-A", "controlplane"]
    devstack.spawn([*celery, "worker", "--loglevel", "INFO", "--concurrency", "2"], log_path=logs / "worker.log", env=env, cwd=ROOT)
    devstack.spawn(
        [*celery, "beat", "--loglevel", "INFO", "--schedule", str(VAR / "celerybeat-schedule")],
        log_path=logs / "beat.log", env=env, cwd=ROOT,
    )
    web = devstack.spawn([*manage, "runserver", f"127.0.0.1:{port}", "--noreload"], log_path=logs / "web.log", env=env, cwd=ROOT)
    if not devstack.wait_until(lambda: devstack.http_ok(f"{url}login/") or devstack.has_exited(web), timeout=60) or devstack.has_exited(web):
        print(devstack.log_tail(logs / "web.log"), file=sys.stderr)
        devstack.stop_all()
        return 1

    gateway_port = int(os.environ.get("SWITCHYARD_DEMO_GATEWAY_PORT", "8080"))
    if not devstack.port_is_free(gateway_port):
        gateway_port = devstack.free_ports(1)[0]
    say("starting the inference gateway")
    gateway = devstack.spawn(
        [python, "-m", "gateway", "--host", "127.0.0.1", "--port", str(gateway_port), "--workers", "1",
         "--control-plane", url.rstrip("/"), "--replica-id", "demo"],
        log_path=logs / "gateway.log", env=env, cwd=ROOT,
    )
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    if not devstack.wait_until(lambda: devstack.http_ok(f"{gateway_url}/v2/health/ready") or devstack.has_exited(gateway), timeout=30) \
            or devstack.has_exited(gateway):
        print(devstack.log_tail(logs / "gateway.log"), file=sys.stderr)
        devstack.stop_all()
        return 1

    # Traffic for the charts and the gates, through the gateway like any client's.
    rate = float(os.environ.get(RATE_ENV) or DEFAULT_RATE)
    devstack.spawn([python, "-m", "controlplane.devstack.loadgen", "--url", gateway_url, "--endpoint", ENDPOINT,
                    "--rate", f"{rate:g}"], log_path=logs / "loadgen.log", env=env, cwd=ROOT)

    print(
        f"\nSwitchyard is running at {url}  (ready in {time.monotonic() - started:.1f} s)\n"
        f"  login:     {USERNAME} / {PASSWORD}\n"
        f"  API docs:  {url}api/docs/\n"
        f"  gateway:   {gateway_url}  (Triton HTTP/REST v2; endpoint vision.fraud-scorer follows label stable)\n"
        f"  S3:        {s3.endpoint_url} bucket {BUCKET}\n"
        + prometheus_line
        + "".join(f"  {t.name}: {t.http_url}\n" for t in tritons)
        + f"  logs:      {logs}\n"
        + f"  load:      {rate:g} requests/s to {ENDPOINT} through the gateway ({RATE_ENV}; logs/loadgen.log)\n"
        + rollout_howto(url)
        + "Press Ctrl-C to stop everything.\n",
        flush=True,
    )
    stopping = []
    # Set both explicitly: a shell starts background jobs with SIGINT ignored, and Python keeps that.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    while not stopping and not devstack.has_exited(web):
        time.sleep(0.5)
    say("stopping")
    devstack.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
