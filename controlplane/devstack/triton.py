"""Real tritonserver processes on loopback, from the binary bundled in the nvidia-pytriton wheel.

See TRITON.md. The wheel ships the server, the Python backend and one backend stub per Python
version; the stub for the running Python is copied next to the backend in a work directory
(never into site-packages). The stub embeds the *system* libpython3.X, which must match the
standard library of the interpreter running this code (check_python_runtime).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.devstack import (
    LOOPBACK,
    free_ports,
    has_exited,
    http_ok,
    log_tail,
    port_is_free,
    spawn,
    stop_process_group,
    wait_until,
)
from controlplane.devstack.s3 import S3Server

EXIT_TIMEOUT_SECS = 2  # how long Triton waits for in-flight work when asked to stop
STOP_GRACE_SECS = 8.0  # then SIGKILL
READY_TIMEOUT_SECS = 60.0


class TritonSetupError(RuntimeError):
    """The local environment cannot run tritonserver (missing wheel, wrong Python, ...)."""


class TritonStartError(RuntimeError):
    """tritonserver was started but did not become ready."""


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    python_backend: Path  # directory with libtriton_python.so
    stub: Path  # triton_python_backend_stub for the running Python
    libs: Path  # nvidia_pytriton.libs, the bundled shared libraries


def find_triton_install() -> TritonInstall:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonSetupError("nvidia-pytriton is not installed; it provides tritonserver (pip install nvidia-pytriton)")
    root = Path(list(spec.submodule_search_locations)[0])
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    install = TritonInstall(
        binary=root / "tritonserver" / "bin" / "tritonserver",
        python_backend=root / "tritonserver" / "backends" / "python",
        stub=root / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub",
        libs=root.parent / "nvidia_pytriton.libs",
    )
    for path in (install.binary, install.python_backend, install.libs):
        if not path.exists():
            raise TritonSetupError(f"nvidia-pytriton looks incomplete: {path} is missing")
    if not install.stub.exists():
        raise TritonSetupError(
            f"nvidia-pytriton has no Python backend stub for Python {version} ({install.stub}); "
            "use a Python version it ships a stub for"
        )
    return install


def server_env(install: TritonInstall, s3: S3Server | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # The copied stub loses its $ORIGIN rpath, so point the loader at the bundled libraries.
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(install.libs), env.get("LD_LIBRARY_PATH")]))
    # The stub's embedded interpreter finds its prefix (and so site-packages with numpy) through
    # the first python3 on PATH: make that this venv's.
    env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env.get("PATH")]))
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE",
                "AWS_SHARED_CREDENTIALS_FILE"):
        env.pop(var, None)
    if s3 is not None:
        env.update(s3.env())
    return env


_runtime_checked = False


def check_python_runtime(install: TritonInstall | None = None) -> None:
    """Fail early and clearly if Python-backend models could not run under this interpreter.

    The stub links the system libpython3.X but runs the standard library of the interpreter on
    PATH (this venv's base). If their patch versions differ, models die at load time with
    errors such as "'_thread.RLock' object has no attribute '_recursion_count'" (a pyenv 3.11.7
    venv on Debian's libpython 3.11.2).
    """
    global _runtime_checked
    if _runtime_checked:
        return
    install = install or find_triton_install()
    soname = f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0"
    env = server_env(install)
    ldd = subprocess.run(["ldd", str(install.stub)], capture_output=True, text=True, env=env, timeout=30)
    match = re.search(rf"^\s*{re.escape(soname)}\s*=>\s*(\S+)", ldd.stdout, re.MULTILINE)
    if match is None or match.group(1) == "not":
        raise TritonSetupError(
            f"The Triton Python backend stub needs {soname}, which the loader cannot find. "
            f"Install the system package that provides it (on Debian: apt-get install libpython"
            f"{sys.version_info.major}.{sys.version_info.minor}).\n{ldd.stdout}{ldd.stderr}"
        )
    libpython = match.group(1)
    probe = subprocess.run(
        [sys.executable, "-I", "-S", "-c",
         "import ctypes,sys; f=ctypes.CDLL(sys.argv[1]).Py_GetVersion; f.restype=ctypes.c_char_p; "
         "print(f().decode().split()[0])", libpython],
        capture_output=True, text=True, timeout=30,
    )
    lib_version = probe.stdout.strip()
    ours = ".".join(map(str, sys.version_info[:3]))
    if probe.returncode != 0 or lib_version != ours:
        raise TritonSetupError(
            f"Python mismatch: Triton's Python backend stub embeds {libpython} "
            f"(Python {lib_version or 'unknown'}), but this interpreter is Python {ours} "
            f"({sys.executable}, base {sys.base_prefix}). Models would fail to load with errors "
            "from the standard library. Make the virtualenv from the system interpreter that "
            f"matches that library, e.g. /usr/bin/python{sys.version_info.major}.{sys.version_info.minor} "
            f"-m venv .venv, not from pyenv or another build.{(' ' + probe.stderr.strip()) if probe.stderr else ''}"
        )
    _runtime_checked = True


def prepare_backends(work_dir: Path, install: TritonInstall | None = None) -> Path:
    """Copy the Python backend plus this Python's stub into `work_dir/backends`; return that dir."""
    install = install or find_triton_install()
    target = Path(work_dir) / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    sources = [p for p in install.python_backend.iterdir() if p.is_file()] + [install.stub]
    for src in sources:
        dst = target / src.name
        if dst.exists() and dst.stat().st_size == src.stat().st_size:
            continue
        tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    return target.parent


@dataclass
class TritonServer:
    name: str
    repository: str
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path
    process: subprocess.Popen | None = field(default=None, repr=False)
    _command: list[str] = field(default_factory=list, repr=False)
    _env: dict[str, str] = field(default_factory=dict, repr=False)
    _cwd: Path | None = field(default=None, repr=False)

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}/metrics"

    def is_running(self) -> bool:
        return self.process is not None and not has_exited(self.process)

    def is_ready(self) -> bool:
        """/v2/health/ready answers 200 (with strict readiness: every loaded model is ready)."""
        return http_ok(f"{self.http_url}/v2/health/ready")

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL after a grace period. Idempotent."""
        stop_process_group(self.process, grace=STOP_GRACE_SECS)

    def start(self, *, timeout: float = READY_TIMEOUT_SECS) -> None:
        if self.is_running():
            return
        ports = (self.http_port, self.grpc_port, self.metrics_port)
        # A just-stopped server's ports are normally free at once; allow a moment if not.
        if not wait_until(lambda: all(port_is_free(p) for p in ports), timeout=10):
            raise TritonStartError(f"{self.name}: ports {ports} are still in use")
        self.process = spawn(self._command, log_path=self.log_path, env=self._env, cwd=self._cwd)
        process = self.process
        # The metrics endpoint comes up a few ms after HTTP; callers expect both.
        up = lambda: self.is_ready() and http_ok(self.metrics_url)  # noqa: E731
        if not wait_until(lambda: up() or has_exited(process), timeout=timeout) or has_exited(process):
            exited = has_exited(process)
            self.stop()
            state = f"exited with code {process.returncode}" if exited else f"not ready after {timeout:.0f} s"
            raise TritonStartError(
                f"tritonserver {self.name!r} {state} (repository {self.repository}).\n"
                f"--- tail of {self.log_path} ---\n{log_tail(self.log_path)}"
            )

    def restart(self, *, timeout: float = READY_TIMEOUT_SECS) -> None:
        """Stop (if running) and start again on the same ports; loaded models are not reloaded."""
        self.stop()
        self.start(timeout=timeout)


def start_triton_server(
    *,
    name: str,
    repository: str,
    s3: S3Server | None,
    work_dir: Path,
    http_port: int | None = None,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    timeout: float = READY_TIMEOUT_SECS,
    extra_args: list[str] | None = None,
) -> TritonServer:
    """Start tritonserver in explicit model-control mode and wait until /v2/health/ready answers.

    `repository` is a local directory or `s3://127.0.0.1:PORT/bucket/prefix` (then `s3` supplies
    the credentials). An S3 prefix with no objects makes Triton exit at startup, so a
    placeholder object is written under it first.
    """
    install = find_triton_install()
    check_python_runtime(install)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    backends = prepare_backends(work_dir, install)
    if repository.startswith("s3://"):
        if s3 is None:
            raise ValueError("an s3:// repository needs the s3 server for its credentials")
        _ensure_s3_prefix(s3, repository)

    wanted = (http_port, grpc_port, metrics_port)
    env = server_env(install, s3)
    attempts = 1 if all(wanted) else 3  # a port picked for us may be taken before Triton binds it
    for attempt in range(1, attempts + 1):
        spare = iter(free_ports(3))
        http, grpc, metrics = (p if p else next(spare) for p in wanted)
        server = TritonServer(
            name=name,
            repository=repository,
            http_port=http,
            grpc_port=grpc,
            metrics_port=metrics,
            log_path=work_dir / f"tritonserver-{name}.log",
            _command=[
                str(install.binary),
                f"--id={name}",
                f"--model-repository={repository}",
                "--model-control-mode=explicit",
                f"--backend-directory={backends}",
                f"--http-address={LOOPBACK}",
                f"--http-port={http}",
                f"--grpc-address={LOOPBACK}",
                f"--grpc-port={grpc}",
                f"--metrics-address={LOOPBACK}",
                f"--metrics-port={metrics}",
                "--metrics-config=summary_latencies=true",
                "--allow-gpu-metrics=false",
                f"--exit-timeout-secs={EXIT_TIMEOUT_SECS}",
                "--pinned-memory-pool-byte-size=0",
                *(extra_args or []),
            ],
            _env=env,
            _cwd=work_dir,
        )
        try:
            server.start(timeout=timeout)
            return server
        except TritonStartError as e:
            if attempt == attempts or "already in use" not in str(e):
                raise
    raise AssertionError("unreachable")


PLACEHOLDER = ".switchyard-keep"


def _ensure_s3_prefix(s3: S3Server, repository: str) -> None:
    # s3://host:port/bucket/prefix
    match = re.fullmatch(r"s3://[^/]+/([^/]+)(?:/(.*))?", repository.rstrip("/"))
    if not match:
        raise ValueError(f"expected s3://host:port/bucket/prefix, got {repository!r}")
    bucket, prefix = match.group(1), (match.group(2) or "").strip("/")
    from controlplane.devstack.s3 import ensure_bucket

    client = s3.client()
    ensure_bucket(client, bucket)
    key = f"{prefix}/{PLACEHOLDER}" if prefix else PLACEHOLDER
    listing = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "", MaxKeys=1)
    if listing.get("KeyCount", 0) == 0:
        client.put_object(Bucket=bucket, Key=key, Body=b"")
