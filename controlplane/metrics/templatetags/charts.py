"""{% chart_panel kind id %}: a page's charts, drawn by static/js/charts.js from the series API.

The template only carries data attributes (the scope, the series keys, the ranges); the numbers
and every user-supplied name arrive as JSON and are placed with textContent, under the CSP.
"""
from django import template

from controlplane.metrics.charts import RANGES

register = template.Library()

TITLES = {
    "requests": "Throughput", "errors": "Errors", "error_ratio": "Error rate",
    "latency_p50": "Latency p50", "latency_p95": "Latency p95", "latency_p99": "Latency p99",
    "inferences": "Inferences", "batch_size": "Batch size", "queue_share": "Time queueing",
    "gpu_utilization": "GPU utilization", "gpu_memory": "GPU memory",
}
RANGE_NAMES = {"15m": "15 min", "1h": "1 h", "24h": "24 h", "7d": "7 d", "30d": "30 d"}
# What each page charts; lines split by variant (endpoint), version (model) or model (server).
PANELS = {
    "fleet": ("requests", "error_ratio"),
    "endpoint": ("requests", "error_ratio", "latency_p50", "latency_p99"),
    "model": ("inferences", "requests", "error_ratio", "batch_size", "queue_share", "latency_p99"),
    "server": ("requests", "inferences", "batch_size", "queue_share"),
}
SPLIT = {"fleet": "", "endpoint": "per variant", "model": "per version", "server": "per model"}
DEFAULT_RANGE = "1h"


@register.inclusion_tag("metrics/_chart.html")
def chart_panel(kind: str, pk=None, gpus: int = 0):
    """`kind` fleet, endpoint, model or server; `pk` the object's id; `gpus` a server's GPU count
    (its GPU charts show only where GPUs are known)."""
    series = list(PANELS[kind])
    if kind == "server" and gpus:
        series += ["gpu_utilization", "gpu_memory"]
    assert set(RANGE_NAMES) == set(RANGES)
    return {
        "scope": kind if kind == "fleet" else f"{kind}:{int(pk)}",
        "charts": [{"series": key, "title": TITLES[key]} for key in series],
        "ranges": list(RANGE_NAMES.items()),
        "default_range": DEFAULT_RANGE,
        "split": SPLIT[kind],
    }
