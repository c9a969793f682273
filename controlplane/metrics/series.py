"""Every series Switchyard's recording rules record: its name, its labels and what it means.

The contract between the rules (`rules.py`, which builds its rules from this list) and whatever
queries them (charts, gates). A name ends in `rate1m` because the shipped rules use a one-minute
window; tests render the same rules with a shorter one, under the same names.

Absent means unknown, never zero: no rule adds `or vector(0)`. Ratios are absent when their
denominator is 0 (no traffic in the window); error rates are 0, not absent, for a series that
had traffic but no error. Latency quantiles are absent while there is no observation.
"""
from __future__ import annotations

from dataclasses import dataclass

# The `switchyard_kind` target label that discovery puts on each target (and the `?kind=` filter).
KIND_TRITON = "triton"
KIND_GATEWAY = "gateway"


@dataclass(frozen=True)
class Series:
    name: str
    labels: tuple[str, ...]
    meaning: str


GATEWAY_LABELS = ("endpoint", "variant", "version")
GATEWAY_LATENCY_LABELS = ("endpoint", "variant")  # the gateway's histogram has no version label
TRITON_LABELS = ("server", "model", "version")
GPU_LABELS = ("server", "gpu_uuid")

# Gateway (summed over every replica and upstream server).
GATEWAY_REQUESTS = Series(
    "switchyard:gateway_requests:rate1m", GATEWAY_LABELS, "requests per second answered by the gateways")
GATEWAY_REQUESTS_BY_CLASS = Series(
    "switchyard:gateway_requests_by_class:rate1m", GATEWAY_LABELS + ("code_class",),
    "requests per second by status class (code_class 2xx, 3xx, 4xx, 5xx)")
GATEWAY_ERRORS = Series(
    "switchyard:gateway_errors:rate1m", GATEWAY_LABELS,
    "5xx answers per second (0 while there is traffic without errors)")
GATEWAY_ERROR_RATIO = Series(
    "switchyard:gateway_error_ratio:rate1m", GATEWAY_LABELS,
    "share of answers that were 5xx, 0..1 (absent without traffic)")
GATEWAY_LATENCY_P50 = Series(
    "switchyard:gateway_latency_seconds:p50_1m", GATEWAY_LATENCY_LABELS,
    "median gateway request duration in seconds, from its histogram")
GATEWAY_LATENCY_P95 = Series(
    "switchyard:gateway_latency_seconds:p95_1m", GATEWAY_LATENCY_LABELS, "95th percentile of the same")
GATEWAY_LATENCY_P99 = Series(
    "switchyard:gateway_latency_seconds:p99_1m", GATEWAY_LATENCY_LABELS, "99th percentile of the same")
FLEET_REQUESTS = Series(
    "switchyard:fleet_requests:rate1m", (), "requests per second through every gateway, all endpoints")
FLEET_ERROR_RATIO = Series(
    "switchyard:fleet_error_ratio:rate1m", (), "share of all gateway answers that were 5xx (absent without traffic)")

# Triton (per server, from each server's own /metrics).
TRITON_INFERENCES = Series(
    "switchyard:triton_inferences:rate1m", TRITON_LABELS,
    "inferences per second (nv_inference_count: a batch of 8 counts 8)")
TRITON_REQUESTS = Series(
    "switchyard:triton_requests:rate1m", TRITON_LABELS, "requests per second, successes plus failures")
TRITON_FAILURES = Series(
    "switchyard:triton_failures:rate1m", TRITON_LABELS,
    "failed requests per second (only exceptions from execute(); count errors at the gateway)")
TRITON_QUEUE_SHARE = Series(
    "switchyard:triton_queue_share:rate1m", TRITON_LABELS,
    "share of request time spent queueing, 0..1 (absent without requests)")
TRITON_BATCH_SIZE = Series(
    "switchyard:triton_batch_size:rate1m", TRITON_LABELS,
    "achieved batch size: inferences per model execution (absent without executions; executions "
    "that raised count as executions but not as inferences, so failures lower it)")
# Summaries do not aggregate: these are per server only, never sum or average them across servers.
TRITON_LATENCY_P50 = Series(
    "switchyard:triton_latency_us:p50", TRITON_LABELS,
    "median request latency in microseconds, Triton's own summary (its sliding window)")
TRITON_LATENCY_P95 = Series("switchyard:triton_latency_us:p95", TRITON_LABELS, "95th percentile of the same")
TRITON_LATENCY_P99 = Series("switchyard:triton_latency_us:p99", TRITON_LABELS, "99th percentile of the same")
GPU_UTILIZATION = Series(
    "switchyard:gpu_utilization", GPU_LABELS, "GPU utilization 0..1, where Triton reports GPUs (absent on CPU)")
GPU_MEMORY_USED = Series(
    "switchyard:gpu_memory_used_bytes", GPU_LABELS, "GPU memory in use, bytes (absent on CPU)")
GPU_MEMORY_TOTAL = Series(
    "switchyard:gpu_memory_total_bytes", GPU_LABELS, "GPU memory size, bytes (absent on CPU)")

ALL: tuple[Series, ...] = (
    GATEWAY_REQUESTS, GATEWAY_REQUESTS_BY_CLASS, GATEWAY_ERRORS, GATEWAY_ERROR_RATIO,
    GATEWAY_LATENCY_P50, GATEWAY_LATENCY_P95, GATEWAY_LATENCY_P99, FLEET_REQUESTS, FLEET_ERROR_RATIO,
    TRITON_INFERENCES, TRITON_REQUESTS, TRITON_FAILURES, TRITON_QUEUE_SHARE, TRITON_BATCH_SIZE,
    TRITON_LATENCY_P50, TRITON_LATENCY_P95, TRITON_LATENCY_P99,
    GPU_UTILIZATION, GPU_MEMORY_USED, GPU_MEMORY_TOTAL,
)
BY_NAME: dict[str, Series] = {s.name: s for s in ALL}
