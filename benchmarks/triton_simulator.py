"""A simulated Triton fleet for the fleet-scale benchmarks: ``TritonSimulator``, one asyncio
process with one listening port per simulated server, each answering the Triton HTTP/REST v2
paths Switchyard uses from an in-memory model repository.

Not a Triton, and named so everywhere (the server metadata says ``simulated-triton-NNNN``): the
project allows a stand-in for Triton only in fast unit tests and in this fleet-scale simulator.
Real Triton processes cost ~1.5 s and a stub process per model instance, so 1,000 of them do not
fit on one machine; 1,000 simulated servers fit in one process on 2 cores.

Each simulated server answers, in the shapes tritonserver 2.51 gives (seen on the real server:
status codes, bodies and error texts):

- ``GET /v2/health/live``, ``GET /v2/health/ready`` (strict readiness: 400 while any version is
  LOADING or UNLOADING or after a failed load), ``GET /v2`` (server metadata);
- ``POST /v2/repository/index`` (``{"ready": true}`` too), ``POST
  /v2/repository/models/{m}/load`` with an optional ``config`` parameter (a ModelConfig as a JSON
  string; ``version_policy`` specific, latest or all), ``POST .../unload``;
- ``GET /v2/models/{m}[/versions/{v}]`` (model metadata), ``.../ready``, ``.../config`` (the
  effective config, with the defaults Triton fills in), ``.../stats``, ``GET /v2/models/stats``;
- ``POST /v2/models/{m}[/versions/{v}]/infer``: JSON or binary tensors in, JSON or binary
  outputs out (``binary_data_output``, per-output ``binary_data``). Every model computes what
  the test model of ``controlplane.devstack.testmodels`` computes: ``OUTPUTk = INPUTk * 2`` and
  ``VERSION`` = the version that answered; any other output is zeros;
- ``GET /metrics``: the Triton-like page of ``benchmarks.fake_triton_fleet``;
- simulator-only, to steer a run: ``POST /simulator/control`` with any of ``load_seconds``,
  ``unload_seconds``, ``infer_ms``, ``load_error`` (a text: every load on that server then
  fails with it, as a model failing to initialize does; null to stop), ``version_gpu_bytes``
  (the GPU ``memory_usage`` each READY version reports; 0, the default, reports none, as a CPU
  model does) and ``gpu_memory_used_bytes`` (what ``nv_gpu_memory_used_bytes`` says for every
  GPU; null for the page's own figure), and ``GET
  /simulator/state`` (those settings and a count of requests per kind).

Lifecycle as Triton's: a load answers once its versions are READY, ``load_seconds`` later (at
once when nothing changes); meanwhile they are LOADING, and versions already READY keep serving
their old config. A changed config reloads every version; a changed version_policy alone loads
only the new versions. Versions the new policy drops, and an unload, go UNLOADING for
``unload_seconds`` (the unload answers at once), then UNAVAILABLE "unloaded". Statistics restart
at every load. The repository holds every model name and every version number;
``latest``/``all`` policies choose among versions 1..``repository_versions``. A load without a
config uses the test model's config.

Run: ``python -m benchmarks.triton_simulator --servers 1000 --ports-file ports.json
[--load-seconds 0.2]``; it prints ``{"ports": [...], "simulator": ...}`` when listening. From
Python: ``start_simulator(n)`` returns a ``Simulator`` (``.urls``, ``.control()``, ``.stop()``),
and ``register_simulated_fleet(simulator)`` registers its servers with Switchyard's fleet app.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import httptools
import numpy as np

from benchmarks.fake_triton_fleet import FakeServer, add_fleet_arguments, announce, fleet_listeners
from controlplane.devstack import LOOPBACK, has_exited, log_tail, spawn, stop_process_group
from controlplane.devstack.testmodels import test_model_config

SIMULATED_VERSION = "2.51.0"  # the tritonserver whose answers are simulated
EXTENSIONS = ["classification", "sequence", "model_repository", "model_repository(unload_dependents)",
              "schedule_policy", "model_configuration", "system_shared_memory", "cuda_shared_memory",
              "binary_tensor_data", "parameters", "statistics", "trace", "logging"]
DEFAULT_LOAD_SECONDS = 0.2
DEFAULT_UNLOAD_SECONDS = 0.1
DEFAULT_REPOSITORY_VERSIONS = 3
READY, LOADING, UNLOADING, UNAVAILABLE = "READY", "LOADING", "UNLOADING", "UNAVAILABLE"
BUSY = (LOADING, UNLOADING)
SETTINGS = ("load_seconds", "unload_seconds", "infer_ms", "load_error", "version_gpu_bytes", "gpu_memory_used_bytes")
COMPUTE_PHASES = ("compute_input", "compute_infer", "compute_output")

# ModelConfig's top-level fields: Triton refuses an override with any other.
CONFIG_FIELDS = {
    "name", "platform", "backend", "runtime", "version_policy", "max_batch_size", "input", "output", "batch_input",
    "batch_output", "optimization", "dynamic_batching", "sequence_batching", "ensemble_scheduling", "instance_group",
    "default_model_filename", "cc_model_filenames", "metric_tags", "parameters", "model_warmup", "model_operations",
    "model_transaction_policy", "model_repository_agents", "response_cache",
}
MODEL_FILENAMES = {"python": "model.py", "onnxruntime": "model.onnx", "pytorch": "model.pt",
                   "tensorflow": "model.savedmodel", "tensorrt": "model.plan", "openvino": "model.xml"}
DTYPES = {  # v2 datatype -> numpy dtype
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}


class SimulatedError(Exception):
    """An error answer, as Triton words it: ``{"error": message}`` with an HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _datatype(config_type: str) -> str:
    """ModelConfig's TYPE_FP32 -> the protocol's FP32 (TYPE_STRING -> BYTES)."""
    name = str(config_type).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def effective_config(config: dict) -> dict:
    """The config Triton serves for an override: ours plus the defaults it fills in (field for
    field what tritonserver 2.51 answered on GET .../config, so drift detection sees no drift)."""
    out = {"name": config["name"], "platform": "", "backend": "", "runtime": "",
           "version_policy": {"latest": {"num_versions": 1}}, "max_batch_size": 0}
    out.update({k: v for k, v in config.items() if k not in ("input", "output", "instance_group")})
    out["input"] = [_with_defaults(t, format="FORMAT_NONE", is_shape_tensor=False, allow_ragged_batch=False,
                                   optional=False, is_non_linear_format_io=False) for t in config.get("input", [])]
    out["output"] = [_with_defaults(t, label_filename="", is_shape_tensor=False, is_non_linear_format_io=False)
                     for t in config.get("output", [])]
    out.setdefault("batch_input", [])
    out.setdefault("batch_output", [])
    out.setdefault("optimization", {"priority": "PRIORITY_DEFAULT", "input_pinned_memory": {"enable": True},
                                    "output_pinned_memory": {"enable": True}, "gather_kernel_buffer_threshold": 0,
                                    "eager_batching": False})
    groups = config.get("instance_group") or [{"kind": "KIND_AUTO", "count": 1}]
    out["instance_group"] = [  # a simulated server has no GPU: KIND_AUTO resolves to the CPU
        {"name": f"{config['name']}_{i}", "count": 1, "gpus": [], "secondary_devices": [], "profile": [],
         "passive": False, "host_policy": "", **g, "kind": g.get("kind", "KIND_AUTO").replace("KIND_AUTO", "KIND_CPU")}
        for i, g in enumerate(groups)
    ]
    if "dynamic_batching" in config:
        batching = {"preferred_batch_size": [], "max_queue_delay_microseconds": 0, "preserve_ordering": False,
                    "priority_levels": 0, "default_priority_level": 0, "priority_queue_policy": {},
                    **config["dynamic_batching"]}
        if not batching["preferred_batch_size"] and out["max_batch_size"] > 0:
            batching["preferred_batch_size"] = [out["max_batch_size"]]
        out["dynamic_batching"] = batching
    out.setdefault("default_model_filename", MODEL_FILENAMES.get(out["backend"], ""))
    for key in ("cc_model_filenames", "metric_tags", "parameters"):
        out.setdefault(key, {})
    out.setdefault("model_warmup", [])
    return out


def _with_defaults(given: dict, **defaults) -> dict:
    return {**given, **{k: v for k, v in defaults.items() if k not in given}}


def _zero_stats() -> dict:
    return {"count": 0, "ns": 0}


@dataclass
class Version:
    """One version of a model on one simulated server. A pending change (``until``) is applied
    when a request first looks at it after that time: no timers."""

    number: int
    state: str = UNAVAILABLE
    reason: str = ""
    config: dict | None = None  # the effective config it serves (READY)
    until: float | None = None
    then: tuple[str, str, dict | None] | None = None  # (state, reason, config) from `until` on
    inference_count: int = 0
    execution_count: int = 0
    last_inference: int = 0
    phases: dict = field(default_factory=dict)
    batches: dict = field(default_factory=dict)

    def settle(self, now: float) -> None:
        if self.until is not None and now >= self.until:
            self.state, self.reason, self.config = self.then
            self.until = self.then = None
            if self.state == READY:
                self.reset_stats()

    def change(self, now: float, seconds: float, state: str, reason: str = "", config: dict | None = None) -> None:
        self.until, self.then = now + seconds, (state, reason, config)
        self.settle(now)

    def reset_stats(self) -> None:
        self.inference_count = self.execution_count = self.last_inference = 0
        self.phases = {k: _zero_stats() for k in ("success", "fail", "queue", *COMPUTE_PHASES, "cache_hit", "cache_miss")}
        self.batches = {}

    @property
    def failed(self) -> bool:
        return self.state == UNAVAILABLE and self.reason not in ("", "unloaded")

    def row(self, name: str) -> dict:
        row = {"name": name, "version": str(self.number), "state": self.state}
        if self.state == UNAVAILABLE:
            row["reason"] = self.reason
        return row

    def stats(self, name: str, gpu_bytes: float = 0.0) -> dict:
        return {
            "name": name, "version": str(self.number), "last_inference": self.last_inference,
            "inference_count": self.inference_count, "execution_count": self.execution_count,
            "inference_stats": {k: dict(v) for k, v in self.phases.items()}, "response_stats": {},
            "batch_stats": [{"batch_size": size, **{k: dict(v) for k, v in phases.items()}}
                            for size, phases in sorted(self.batches.items())],
            "memory_usage": [{"type": "GPU", "id": 0, "byte_size": int(gpu_bytes)}] if gpu_bytes else [],
        }

    def record(self, batch: int, ns: int) -> None:
        """One successful execution of `batch` inferences that took `ns`."""
        self.inference_count += batch
        self.execution_count += 1
        self.last_inference = time.time_ns() // 1_000_000
        split = {"queue": ns // 20, "compute_input": ns // 20, "compute_infer": ns * 8 // 10, "compute_output": ns // 20}
        for phase, spent in (("success", ns), *split.items()):
            self.phases[phase]["count"] += 1
            self.phases[phase]["ns"] += spent
        per_batch = self.batches.setdefault(batch, {k: _zero_stats() for k in COMPUTE_PHASES})
        for phase in per_batch:
            per_batch[phase]["count"] += 1
            per_batch[phase]["ns"] += split[phase]


@dataclass
class Deferred:
    """An answer that is due at `at` (monotonic): a load answers when its versions are READY.
    `model`'s versions are settled as of `at` first: the event loop's timers may fire a little
    before the monotonic clock reaches `at`, and a client asking right after must see them READY."""

    at: float
    answer: tuple
    model: str | None = None


def _json(status: int, payload) -> tuple:
    return status, json.dumps(payload, separators=(",", ":")).encode(), b"application/json", b""


def _empty(status: int = 200, content_type: bytes = b"application/json") -> tuple:
    return status, b"", content_type, b""


class SimulatedTritonServer:
    """One simulated Triton server: its repository, settings and request counts."""

    def __init__(self, index: int, *, started: float, load_seconds: float = DEFAULT_LOAD_SECONDS,
                 unload_seconds: float = DEFAULT_UNLOAD_SECONDS, infer_ms: float = 0.0,
                 repository_versions: int = DEFAULT_REPOSITORY_VERSIONS):
        self.name = f"simulated-triton-{index:04d}"
        self.models: dict[str, dict[int, Version]] = {}
        self.load_seconds, self.unload_seconds, self.infer_ms = load_seconds, unload_seconds, infer_ms
        self.load_error: str | None = None
        self.version_gpu_bytes = 0.0  # what each READY version reports in memory_usage (0: nothing, as on a CPU)
        self.repository_versions = repository_versions
        self.requests: Counter = Counter()
        self.metrics_page = FakeServer(index, started)

    # -- dispatch -------------------------------------------------------------------------
    def handle(self, method: bytes, url: bytes, headers: dict, body: bytes) -> tuple | Deferred:
        """(status, body, content type, extra header lines) or a Deferred one."""
        path = url.split(b"?", 1)[0].decode("latin-1")
        parts = [unquote(p) for p in path.strip("/").split("/")]
        try:
            kind, want, args = self._route(parts)
            self.requests[kind] += 1
            if method.decode() != want:
                raise SimulatedError(405, "Method Not Allowed")
            return getattr(self, f"_{kind.replace(' ', '_')}")(time.monotonic(), *args, headers=headers, body=body)
        except SimulatedError as exc:
            return _json(exc.status, {"error": exc.message})
        except Exception as exc:  # noqa: BLE001 - a bug here must still answer, or the client waits for nothing
            return _json(500, {"error": f"simulator: {type(exc).__name__}: {exc}"})

    def _route(self, p: list[str]) -> tuple[str, str, tuple]:
        """(kind, method, arguments) of a path, or a 404 as Triton's."""
        n = len(p)
        if p == ["v2"]:
            return "server metadata", "GET", ()
        if n == 3 and p[:2] == ["v2", "health"] and p[2] in ("live", "ready"):
            return f"health {p[2]}", "GET", ()
        if p == ["v2", "repository", "index"]:
            return "index", "POST", ()
        if n == 5 and p[:3] == ["v2", "repository", "models"] and p[4] in ("load", "unload"):
            return p[4], "POST", (p[3],)
        if p == ["v2", "models", "stats"]:
            return "stats", "GET", (None, None)
        if p == ["metrics"]:
            return "metrics", "GET", ()
        if n == 2 and p[0] == "simulator" and p[1] in ("control", "state"):
            return p[1], "POST" if p[1] == "control" else "GET", ()
        if n >= 3 and p[:2] == ["v2", "models"]:
            model, rest, version = p[2], p[3:], None
            if rest[:1] == ["versions"]:
                if len(rest) < 2 or not rest[1].isdigit():
                    raise SimulatedError(404, "Not Found")
                version, rest = int(rest[1]), rest[2:]
            if not rest:
                return "model metadata", "GET", (model, version)
            if len(rest) == 1 and rest[0] in ("ready", "config", "stats", "infer"):
                kind = "model ready" if rest[0] == "ready" else rest[0]
                return kind, "POST" if kind == "infer" else "GET", (model, version)
        raise SimulatedError(404, "Not Found")

    # -- state ----------------------------------------------------------------------------
    def versions(self, model: str, now: float) -> dict[int, Version]:
        versions = self.models.get(model, {})
        for v in versions.values():
            v.settle(now)
        return versions

    def _serving(self, model: str, version: int | None, now: float) -> Version:
        """The READY version a request names (or the highest READY one); 404s as Triton's."""
        if model not in self.models:
            raise SimulatedError(404, f"Request for unknown model: '{model}' is not found")
        versions = self.versions(model, now)
        ready = [v for v in versions.values() if v.state == READY]
        if version is None:
            if not ready:
                raise SimulatedError(404, f"Request for unknown model: '{model}' has no available versions")
            return max(ready, key=lambda v: v.number)
        if version not in versions or versions[version].state != READY:
            raise SimulatedError(404, f"Request for unknown model: '{model}' version {version} is not found")
        return versions[version]

    def is_ready(self, now: float) -> bool:
        return not any(v.state in BUSY or v.failed for m in self.models for v in self.versions(m, now).values())

    # -- server -----------------------------------------------------------------------------
    def _server_metadata(self, now, **_):
        return _json(200, {"name": self.name, "version": SIMULATED_VERSION, "extensions": EXTENSIONS})

    def _health_live(self, now, **_):
        return _empty(200, b"text/plain")

    def _health_ready(self, now, **_):
        return _empty(200 if self.is_ready(now) else 400, b"text/plain")  # no body either way

    def _model_ready(self, now, model, version=None, **_):
        versions = self.versions(model, now)
        if not any(v.state == READY and (version is None or v.number == version) for v in versions.values()):
            raise SimulatedError(400, "Model version not ready")
        return _empty(200, b"text/plain")

    def _index(self, now, body=b"", **_):
        ready_only = bool(_body_json(body).get("ready")) if body.strip() else False
        rows = []
        for name in sorted(self.models):
            versions = self.versions(name, now)
            if not versions and not ready_only:
                rows.append({"name": name})
            rows += [v.row(name) for _, v in sorted(versions.items()) if v.state == READY or not ready_only]
        return _json(200, rows)

    # -- repository -------------------------------------------------------------------------
    def _load(self, now, model, body=b"", **_):
        params = (_body_json(body).get("parameters") or {}) if body.strip() else {}
        failed_to_poll = SimulatedError(500, f"failed to load '{model}', failed to poll from model repository")
        if "config" in params:
            if not isinstance(params["config"], str):
                raise SimulatedError(500, "attempt to access JSON non-string as string")
            try:
                config = json.loads(params["config"])
            except ValueError:
                raise failed_to_poll from None
        else:
            config = test_model_config(model)
        if not isinstance(config, dict) or config.get("name", model) != model or set(config) - CONFIG_FIELDS:
            raise failed_to_poll
        wanted = self._policy_versions(config.get("version_policy") or {"latest": {"num_versions": 1}})
        if wanted is None:
            raise failed_to_poll
        effective = effective_config({**config, "name": model})
        versions = self.models.setdefault(model, {})
        self.versions(model, now)
        loading = []
        for number in wanted:
            v = versions.setdefault(number, Version(number))
            if v.state == READY and v.until is None and _same_but_policy(v.config, effective):
                v.config = effective  # only the version policy differs: no reload
                continue
            if v.state != READY:
                v.state, v.reason = LOADING, ""
            loading.append(v)
        if self.load_error and loading:  # as a model failing to initialize; versions serving go on serving
            reason = self.load_error
            for v in loading:
                if v.state != READY:
                    v.change(now, self.load_seconds, UNAVAILABLE, reason)
            text = "".join(f"version {v.number} is at UNAVAILABLE state: {reason};"
                           for v in sorted(loading, key=lambda v: -v.number))
            error = {"error": f"load failed for model '{model}': {text}\n"}
            return Deferred(now + self.load_seconds, _json(400, error), model)
        for v in loading:
            v.change(now, self.load_seconds, READY, "", effective)
        for number, v in versions.items():
            if number not in wanted and v.state in (READY, LOADING):
                v.state = UNLOADING
                v.change(now, self.unload_seconds, UNAVAILABLE, "unloaded")
        return Deferred(now + self.load_seconds, _empty(), model) if loading else _empty()

    def _policy_versions(self, policy) -> list[int] | None:
        available = list(range(1, self.repository_versions + 1))
        if not isinstance(policy, dict) or len(policy) != 1:
            return None
        kind, spec = next(iter(policy.items()))
        spec = spec or {}
        if kind == "all":
            return available
        if kind == "latest":
            count = int(spec.get("num_versions", 1))
            return available[-count:] if count > 0 else None
        if kind == "specific":
            wanted = spec.get("versions") or []
            if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in wanted):
                return None
            return sorted(set(wanted)) or None
        return None

    def _unload(self, now, model, body=b"", **_):
        if body.strip():
            _body_json(body)
        for v in self.versions(model, now).values():
            if v.state in (READY, LOADING):
                v.state = UNLOADING
                v.change(now, self.unload_seconds, UNAVAILABLE, "unloaded")
            elif v.failed:
                v.reason = "unloaded"
        return _empty()

    # -- models -----------------------------------------------------------------------------
    def _model_metadata(self, now, model, version=None, **_):
        served = self._serving(model, version, now)
        config = served.config
        batch = [-1] if config["max_batch_size"] > 0 else []

        def tensors(specs):
            return [{"name": t["name"], "datatype": _datatype(t["data_type"]), "shape": batch + list(t.get("dims", []))}
                    for t in specs]

        ready = sorted(v.number for v in self.versions(model, now).values() if v.state == READY)
        return _json(200, {"name": model, "versions": [str(v) for v in ready],
                           "platform": config.get("platform") or config.get("backend"),
                           "inputs": tensors(config["input"]), "outputs": tensors(config["output"])})

    def _config(self, now, model, version=None, **_):
        return _json(200, self._serving(model, version, now).config)

    def _stats(self, now, model=None, version=None, **_):
        names = sorted(self.models) if model is None else [model]
        found = [(name, v) for name in names for _, v in sorted(self.versions(name, now).items())
                 if v.state == READY and (version is None or v.number == version)]
        if model is not None and not found:
            which = f"'{model}'" if version is None else f"'{model}' version {version}"
            raise SimulatedError(400, f"requested model {which} is not available")
        return _json(200, {"model_stats": [v.stats(name, self.version_gpu_bytes) for name, v in found]})

    def _infer(self, now, model, version=None, headers=None, body=b"", **_):
        started = time.perf_counter_ns()
        served = self._serving(model, version, now)
        header_length = headers.get(b"inference-header-content-length")
        head, binary = (body[:int(header_length)], body[int(header_length):]) if header_length else (body, b"")
        request = _body_json(head)
        outputs, batch = simulate_model(model, served, request, binary)
        served.record(batch, time.perf_counter_ns() - started)
        answer = _infer_answer(model, served.number, request, outputs)
        if self.infer_ms > 0:
            return Deferred(now + self.infer_ms / 1000.0, answer)
        return answer

    def _metrics(self, now, **_):
        return 200, self.metrics_page.page(time.time()), b"text/plain; version=0.0.4; charset=utf-8", b""

    # -- simulator-only -----------------------------------------------------------------------
    def _control(self, now, body=b"", **_):
        changes = _body_json(body)
        unknown = set(changes) - set(SETTINGS)
        if unknown:
            raise SimulatedError(400, f"unknown simulator settings {sorted(unknown)}; known: {list(SETTINGS)}")
        for key, value in changes.items():
            setattr(self, key, value if key == "load_error" or value is None else float(value))
        return self._state(now)

    @property
    def gpu_memory_used_bytes(self) -> float | None:
        """What the metrics page says every GPU has in use (None: its own made-up figure)."""
        return self.metrics_page.gpu_memory_used

    @gpu_memory_used_bytes.setter
    def gpu_memory_used_bytes(self, value: float | None) -> None:
        self.metrics_page.gpu_memory_used = value

    def _state(self, now, **_):
        return _json(200, {"name": self.name, "settings": {k: getattr(self, k) for k in SETTINGS},
                           "requests": dict(self.requests)})


def _same_but_policy(a: dict | None, b: dict) -> bool:
    return a is not None and {k: v for k, v in a.items() if k != "version_policy"} == {
        k: v for k, v in b.items() if k != "version_policy"}


def _body_json(body: bytes) -> dict:
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise SimulatedError(500, f"failed to parse the request JSON buffer: {exc}") from None
    if not isinstance(value, dict):
        raise SimulatedError(500, "failed to parse the request JSON buffer: expected an object")
    return value


def simulate_model(model: str, served: Version, request: dict, binary: bytes) -> tuple[list, int]:
    """Validate the inputs as Triton does and compute the outputs: [(name, datatype, array)], batch."""
    config = served.config
    max_batch = int(config.get("max_batch_size") or 0)
    specs = {t["name"]: t for t in config["input"]}
    arrays, offset, batch = {}, 0, 1
    given = request.get("inputs") or []
    for tensor in given:
        name = tensor.get("name")
        if name not in specs:
            raise SimulatedError(400, f"unexpected inference input '{name}' for model '{model}'")
        want = _datatype(specs[name]["data_type"])
        if tensor.get("datatype") != want:
            raise SimulatedError(400, f"[request id: <id_unknown>] inference input '{name}' data-type is "
                                      f"'{tensor.get('datatype')}', but model '{model}' expects '{want}'")
        shape = [int(d) for d in tensor.get("shape", [])]
        dims = list(specs[name].get("dims", []))
        expected = ([-1] if max_batch > 0 else []) + dims
        if len(shape) != len(expected) or any(e != -1 and e != s for e, s in zip(expected, shape)):
            raise SimulatedError(400, f"[request id: <id_unknown>] unexpected shape for input '{name}' for model "
                                      f"'{model}'. Expected {json.dumps(expected, separators=(',', ':'))}, got "
                                      f"{json.dumps(shape, separators=(',', ':'))}.")
        if max_batch > 0:
            batch = shape[0]
            if batch > max_batch:
                raise SimulatedError(400, f"[request id: <id_unknown>] inference request batch-size must be <= "
                                          f"{max_batch} for '{model}'")
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        try:
            if size is not None:
                arrays[name] = _from_binary(binary[offset:offset + size], want, shape)
                offset += size
            else:
                arrays[name] = np.array(tensor.get("data"), dtype=DTYPES[want]).reshape(shape)
        except (ValueError, TypeError):
            raise SimulatedError(500, "Unable to parse 'data': Shape does not match true shape of 'data' field") from None
    missing = sorted(set(specs) - set(arrays))
    if missing:
        raise SimulatedError(400, f"[request id: <id_unknown>] expected {len(specs)} inputs but got {len(given)} "
                                  f"inputs for model '{model}'. Got input(s) {sorted(arrays)}, but missing required "
                                  f"input(s) {missing}. Please provide all required input(s).")
    outputs = []
    for spec in config["output"]:
        name, datatype = spec["name"], _datatype(spec["data_type"])
        shape = ([batch] if max_batch > 0 else []) + [1 if d < 0 else d for d in spec.get("dims", [])]
        source = arrays.get("INPUT" + name[len("OUTPUT"):]) if name.startswith("OUTPUT") else None
        if name == "VERSION":
            value = np.full(shape, served.number, dtype=DTYPES[datatype])
        elif source is not None and source.size == int(np.prod(shape)):
            value = (source * 2).astype(DTYPES[datatype]).reshape(shape)
        else:
            value = np.full(shape, b"" if datatype == "BYTES" else 0, dtype=DTYPES[datatype])
        outputs.append((name, datatype, value))
    return outputs, batch


def _from_binary(raw: bytes, datatype: str, shape: list[int]) -> np.ndarray:
    if datatype != "BYTES":
        return np.frombuffer(raw, dtype=DTYPES[datatype]).reshape(shape)
    items, at = [], 0
    while at < len(raw):
        length = int.from_bytes(raw[at:at + 4], "little")
        items.append(raw[at + 4:at + 4 + length])
        at += 4 + length
    return np.array(items, dtype=np.object_).reshape(shape)


def _to_binary(value: np.ndarray, datatype: str) -> bytes:
    if datatype != "BYTES":
        return value.tobytes()
    return b"".join(len(b).to_bytes(4, "little") + b for b in (bytes(x) for x in value.flatten()))


def _infer_answer(model: str, version: int, request: dict, outputs: list) -> tuple:
    """The v2 inference response: JSON, or a JSON header then the binary outputs."""
    requested = request.get("outputs")
    all_binary = bool((request.get("parameters") or {}).get("binary_data_output"))
    if requested is not None:
        known = {name for name, _, _ in outputs}
        for out in requested:
            if out.get("name") not in known:
                raise SimulatedError(400, f"unexpected inference output '{out.get('name')}' for model '{model}'")
        wanted = {out["name"]: bool((out.get("parameters") or {}).get("binary_data", all_binary)) for out in requested}
        outputs = [o for o in outputs if o[0] in wanted]
    else:
        wanted = {name: all_binary for name, _, _ in outputs}
    head = {"model_name": model, "model_version": str(version), "outputs": []}
    if request.get("id"):
        head = {"id": request["id"], **head}
    chunks = []
    for name, datatype, value in outputs:
        entry = {"name": name, "datatype": datatype, "shape": list(value.shape)}
        if wanted[name]:
            raw = _to_binary(value, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            data = value.flatten().tolist()
            entry["data"] = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in data]
        head["outputs"].append(entry)
    text = json.dumps(head, separators=(",", ":")).encode()
    if not chunks:
        return 200, text, b"application/json", b""
    return (200, text + b"".join(chunks), b"application/octet-stream",
            b"Inference-Header-Content-Length: %d\r\n" % len(text))


# -- HTTP ---------------------------------------------------------------------------------------

_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            500: b"Internal Server Error"}


class _Connection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive on one simulated server's port, parsed by httptools; answers go
    out in request order, a deferred one (a load) holding back those behind it."""

    def __init__(self, server: SimulatedTritonServer):
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.queue: deque = deque()
        self.waiting = False
        self.url, self.headers, self.body = b"", {}, []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(_http(400, b'{"error":"malformed HTTP request"}', b"application/json", b"", False))
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", {}, []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.queue.append((self.parser.get_method(), self.url, self.headers, b"".join(self.body),
                           self.parser.should_keep_alive()))
        self._next()

    def _next(self) -> None:
        while self.queue and not self.waiting:
            method, url, headers, body, keep_alive = self.queue.popleft()
            answer = self.server.handle(method, url, headers, body)
            if isinstance(answer, Deferred):
                self.waiting = True
                delay = max(0.0, answer.at - time.monotonic())
                asyncio.get_running_loop().call_later(delay, self._deferred, answer, keep_alive)
                return
            self._write(answer, keep_alive)

    def _deferred(self, answer: Deferred, keep_alive: bool) -> None:
        if answer.model is not None:
            self.server.versions(answer.model, max(answer.at, time.monotonic()))
        self.waiting = False
        self._write(answer.answer, keep_alive)
        self._next()

    def _write(self, answer: tuple, keep_alive: bool) -> None:
        if self.transport.is_closing():
            self.queue.clear()
            return
        self.transport.write(_http(*answer, keep_alive))
        if not keep_alive:
            self.queue.clear()
            self.transport.close()


def _http(status: int, body: bytes, content_type: bytes, extra: bytes, keep_alive: bool) -> bytes:
    return (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n"
            % (status, _REASONS.get(status, b"Error"), content_type, len(body), extra,
               b"" if keep_alive else b"Connection: close\r\n")) + body


async def serve(socks: list[socket.socket], ports_file: str | None, **settings) -> None:
    loop = asyncio.get_running_loop()
    started = time.time()
    listeners = []
    for i, sock in enumerate(socks):
        server = SimulatedTritonServer(i, started=started, **settings)
        listeners.append(await loop.create_server(lambda s=server: _Connection(s), sock=sock, backlog=128))
    announce(socks, ports_file, simulator="simulated Triton HTTP/REST v2", **settings)
    await asyncio.gather(*(s.serve_forever() for s in listeners))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.triton_simulator", description=__doc__.split("\n\n")[0])
    add_fleet_arguments(parser)
    parser.add_argument("--load-seconds", type=float, default=DEFAULT_LOAD_SECONDS,
                        help=f"simulated load time, LOADING until then (default {DEFAULT_LOAD_SECONDS})")
    parser.add_argument("--unload-seconds", type=float, default=DEFAULT_UNLOAD_SECONDS,
                        help=f"simulated unload time, UNLOADING until then (default {DEFAULT_UNLOAD_SECONDS})")
    parser.add_argument("--infer-ms", type=float, default=0.0, help="simulated inference time (default 0)")
    parser.add_argument("--repository-versions", type=int, default=DEFAULT_REPOSITORY_VERSIONS,
                        help="versions 1..N that latest/all version policies choose from (default 3)")
    args = parser.parse_args(argv)
    socks = fleet_listeners(args)
    settings = {"load_seconds": args.load_seconds, "unload_seconds": args.unload_seconds, "infer_ms": args.infer_ms,
                "repository_versions": args.repository_versions}
    try:
        import uvloop  # the gateway's event loop, a declared dependency
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(serve(socks, args.ports_file, **settings))
    except KeyboardInterrupt:
        pass
    return 0


# -- from Python: start, steer, stop; register with Switchyard -----------------------------------


@dataclass
class Simulator:
    """A running simulated fleet (a subprocess): one URL per simulated server."""

    process: object
    ports: list[int]
    host: str = LOOPBACK
    workdir: Path | None = None
    own_workdir: bool = False

    @property
    def urls(self) -> list[str]:
        return [f"http://{self.host}:{port}" for port in self.ports]

    @property
    def metrics_urls(self) -> list[str]:
        return [f"{url}/metrics" for url in self.urls]

    def control(self, servers: list[int] | None = None, **settings) -> list[dict]:
        """Change settings (any of SETTINGS) on the servers at these indexes (all by default);
        returns each one's state."""
        body = json.dumps(settings).encode()
        return [_post_json(f"{self.urls[i]}/simulator/control", body) for i in (servers or range(len(self.ports)))]

    def state(self, server: int) -> dict:
        with urllib.request.urlopen(f"{self.urls[server]}/simulator/state", timeout=10) as response:
            return json.loads(response.read())

    def log(self) -> str:
        return log_tail(self.workdir / "triton_simulator.log") if self.workdir else ""

    def stop(self) -> None:
        stop_process_group(self.process, grace=5.0)
        if self.own_workdir and self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _post_json(url: str, body: bytes) -> dict:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def start_simulator(servers: int, *, load_seconds: float = DEFAULT_LOAD_SECONDS,
                    unload_seconds: float = DEFAULT_UNLOAD_SECONDS, infer_ms: float = 0.0,
                    repository_versions: int = DEFAULT_REPOSITORY_VERSIONS, host: str = LOOPBACK,
                    workdir: Path | None = None, timeout: float = 60.0) -> Simulator:
    """Start `servers` simulated Triton servers in one subprocess; returns once all listen.

    The log and the ports file go to `workdir` (a temporary directory, removed on stop, if none).
    """
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="triton-simulator-")) if own else Path(workdir)
    ports_file = workdir / "ports.json"
    ports_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.triton_simulator", "--servers", str(servers), "--host", host,
           "--ports-file", str(ports_file), "--load-seconds", str(load_seconds), "--unload-seconds",
           str(unload_seconds), "--infer-ms", str(infer_ms), "--repository-versions", str(repository_versions)]
    process = spawn(cmd, log_path=workdir / "triton_simulator.log", cwd=Path(__file__).resolve().parent.parent)
    simulator = Simulator(process=process, ports=[], host=host, workdir=workdir, own_workdir=own)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not has_exited(process):
        if ports_file.exists():
            simulator.ports = json.loads(ports_file.read_text())["ports"]
            return simulator
        time.sleep(0.02)
    text = simulator.log()
    simulator.stop()
    state = "exited" if has_exited(process) else f"did not listen within {timeout:g} s"
    raise RuntimeError(f"the Triton simulator {state}:\n{text}")


def register_simulated_fleet(simulator: Simulator, *, actor=None, pool_name: str = "simulated-triton",
                             prefix: str = "sim-triton", probe: bool = True, **server_fields) -> list:
    """Register every server of `simulator` with Switchyard's fleet app, through its services
    (validated, audited: ``pool.create``, ``server.register``), in pool `pool_name` (made if
    missing), named ``{prefix}-0000``...; with `probe`, run the prober over them once so that
    they are up. Returns the Server rows in order. Needs Django set up."""
    from controlplane.audit.context import Actor
    from controlplane.fleet import services
    from controlplane.fleet.models import Pool, Server

    actor = actor or Actor.system()
    pool = Pool.objects.filter(name=pool_name).first() or services.pool_create(
        actor=actor, name=pool_name, description="Simulated Triton servers (benchmarks/triton_simulator.py), not Triton")
    fields = {"labels": {"simulated": "true"}, **server_fields}
    servers = [
        services.server_register(actor=actor, name=f"{prefix}-{i:04d}", pool=pool, http_url=url,
                                 metrics_url=f"{url}/metrics", **fields)
        for i, url in enumerate(simulator.urls)
    ]
    if probe:
        services.fleet_probe(server_ids=[s.pk for s in servers], actor=actor)
    return list(Server.objects.filter(pk__in=[s.pk for s in servers]).order_by("name"))


if __name__ == "__main__":
    sys.exit(main())
