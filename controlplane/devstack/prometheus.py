"""A real Prometheus (Debian's `prometheus` package) as a subprocess on loopback, for the demo and
the tests. It runs on a free port (never assumed 9090: the package may run its own service there)
with a configuration directory written beforehand (`manage.py prometheus_config --out DIR`, or
`controlplane.metrics.config.render_files`), and keeps its data under that directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.devstack import (
    LOOPBACK,
    free_ports,
    has_exited,
    http_ok,
    log_tail,
    spawn,
    stop_process_group,
    wait_until,
)

INSTALL_HINT = (
    "Switchyard's demo and tests run a real Prometheus from Debian's package: "
    "`sudo apt-get install -y prometheus` (it brings promtool too; `scripts/test` installs it when missing). "
    "Elsewhere, put a Prometheus 2.x `prometheus` binary on PATH."
)


class PrometheusSetupError(RuntimeError):
    pass


class PrometheusStartError(RuntimeError):
    pass


def find_binary(name: str = "prometheus") -> str:
    """The path of `prometheus` (or `promtool`): PATH first, then /usr/bin where Debian puts it."""
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
    if not found:
        raise PrometheusSetupError(f"`{name}` was not found. {INSTALL_HINT}")
    return found


@dataclass
class PrometheusServer:
    port: int
    config_dir: Path
    log_path: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def api(self, path: str, params: dict | None = None, *, timeout: float = 5.0):
        """GET /api/v1/<path>: the `data` of a successful answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=timeout) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise PrometheusStartError(f"Prometheus answered {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query's vector: [{"metric": {...}, "value": [t, "v"]}]."""
        return self.api("query", {"query": expr})["result"]

    def active_targets(self) -> list[dict]:
        return self.api("targets", {"state": "active"})["activeTargets"]

    def is_running(self) -> bool:
        return self.process is not None and not has_exited(self.process)

    def stop(self) -> None:
        stop_process_group(self.process, grace=5.0)


def start_prometheus(*, config_dir: Path, log_dir: Path, port: int | None = None, retention: str = "1d",
                     timeout: float = 30.0) -> PrometheusServer:
    """Start Prometheus on `config_dir/prometheus.yml` and wait until it is ready."""
    binary = find_binary("prometheus")
    config_dir = Path(config_dir)
    port = port or free_ports(1)[0]
    log_path = Path(log_dir) / f"prometheus-{port}.log"
    process = spawn([
        binary,
        f"--config.file={config_dir / 'prometheus.yml'}",
        f"--web.listen-address={LOOPBACK}:{port}",
        f"--storage.tsdb.path={config_dir / 'data'}",
        f"--storage.tsdb.retention.time={retention}",
        "--web.enable-lifecycle",  # POST /-/reload after rewriting the config
    ], log_path=log_path, cwd=config_dir)
    server = PrometheusServer(port=port, config_dir=config_dir, log_path=log_path, process=process)
    if not wait_until(lambda: http_ok(f"{server.url}/-/ready") or has_exited(process), timeout=timeout, interval=0.1) \
            or has_exited(process):
        server.stop()
        raise PrometheusStartError(
            f"Prometheus on {LOOPBACK}:{port} was not ready within {timeout:.0f} s.\n"
            f"--- {log_path} ---\n{log_tail(log_path)}"
        )
    return server


