"""Every PromQL query Switchyard sends is built here, from the recorded series in `series.py`.

Label values never reach a query unescaped: `quote()` makes a PromQL string literal (backslash,
double quote, newline and every other control character escaped), and `regex_literal()` makes a
value match only itself inside a regex matcher. Names come from users (teams, models,
endpoints), so these two are the only ways a value enters a query.

Three users: the chart API (`chart_query`: one range query per chart), the model page's batching
insight (`triton_batching`) and the rollout gates (`gate_sample`). Absent means unknown: no
query adds `or vector(0)`, and a ratio over no traffic is NaN, which the client reads as None.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controlplane.metrics import series as S
from controlplane.metrics.client import PrometheusClient

# The gateway's own request counter, as the rules read it: a gate's sample size counts requests
# exactly, with increase(), instead of estimating them from a rate.
from controlplane.metrics.rules import GATEWAY_REQUESTS as GATEWAY_REQUESTS_COUNTER

SCOPE_KINDS = ("fleet", "endpoint", "model", "server")
CHART_SERIES = (
    "requests", "errors", "error_ratio", "latency_p50", "latency_p95", "latency_p99",
    "inferences", "batch_size", "queue_share", "gpu_utilization", "gpu_memory",
)
GATE_METRICS = ("error_ratio", "latency_p50", "latency_p95", "latency_p99")

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(value: str) -> str:
    """A PromQL double-quoted string literal that reads back as exactly `value`."""
    if not isinstance(value, str):
        raise TypeError(f"label values are strings, not {type(value).__name__}")
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:  # a lone surrogate is not text; Prometheus would refuse the query
            raise ValueError("label values must be valid Unicode text")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def regex_literal(value: str) -> str:
    """`value` as an RE2 regex that matches only itself: every ASCII character other than a
    letter, a digit or `_` is backslash-escaped (RE2 reads those escapes as the character)."""
    return "".join(f"\\{ch}" if ord(ch) < 0x80 and not (ch.isalnum() or ch == "_") else ch for ch in value)


@dataclass(frozen=True)
class Eq:
    value: str


@dataclass(frozen=True)
class Prefixes:
    """Matches label values that start with one of `prefixes` followed by something."""

    prefixes: tuple[str, ...]

    def __post_init__(self):
        if not self.prefixes:  # "(?:).+" would match every value: fail closed
            raise ValueError("a matcher needs at least one value")

    def regex(self) -> str:
        return "(?:" + "|".join(regex_literal(p) for p in self.prefixes) + ").+"


@dataclass(frozen=True)
class AnyOf(Prefixes):
    """Matches exactly one of the values (`prefixes` holds the values)."""

    def regex(self) -> str:
        return "(?:" + "|".join(regex_literal(p) for p in self.prefixes) + ")"


def selector(series: S.Series | str, **matchers: Eq | Prefixes | AnyOf | str | None) -> str:
    """`name{label="value", ...}`; a None matcher is left out, a str means Eq."""
    name = series.name if isinstance(series, S.Series) else series
    parts = []
    for label, m in matchers.items():
        if m is None:
            continue
        if isinstance(m, str):
            m = Eq(m)
        if isinstance(m, Eq):
            parts.append(f"{label}={quote(m.value)}")
        else:
            parts.append(f"{label}=~{quote(m.regex())}")
    return f"{name}{{{', '.join(parts)}}}" if parts else name


# -- chart queries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """What a chart is about. `name` is the endpoint's public name, the model's Triton name or
    the server's name; `teams` the team slugs whose series the caller may see (None: all, for a
    platform admin). Resolving a scope against the caller is the chart service's job."""

    kind: str
    name: str = ""
    teams: tuple[str, ...] | None = None

    def team_prefixes(self) -> Prefixes | None:
        return None if self.teams is None else Prefixes(tuple(f"{slug}." for slug in sorted(self.teams)))


@dataclass(frozen=True)
class ChartQuery:
    expr: str
    line_labels: tuple[str, ...]  # the labels that tell the lines apart, in label order
    unit: str  # "req/s", "ratio", "s", "inferences/s", "bytes", ""
    fixed_label: str = ""  # for a single line without labels


class Unsupported(ValueError):
    """This series is not charted for this kind of scope."""


def _by(labels: Iterable[str]) -> str:
    return f"by ({', '.join(labels)})"


def _weighted_batch(by: str, **m) -> str:
    # inferences / executions, with executions = inferences / batch size per series: exact over servers.
    inf, batch = selector(S.TRITON_INFERENCES, **m), selector(S.TRITON_BATCH_SIZE, **m)
    return f"sum {by} ({inf}) / sum {by} ({inf} / {batch})"


def _weighted_queue(by: str, **m) -> str:
    # Weighted by requests: a busy server's share counts more than an idle one's.
    share, req = selector(S.TRITON_QUEUE_SHARE, **m), selector(S.TRITON_REQUESTS, **m)
    return f"sum {by} ({share} * {req}) / sum {by} ({req})"


def _triton(series_key: str, by_labels: tuple[str, ...], **m) -> ChartQuery:
    by = _by(by_labels)
    if series_key == "requests":
        return ChartQuery(f"sum {by} ({selector(S.TRITON_REQUESTS, **m)})", by_labels, "req/s")
    if series_key == "errors":
        return ChartQuery(f"sum {by} ({selector(S.TRITON_FAILURES, **m)})", by_labels, "req/s")
    if series_key == "error_ratio":
        return ChartQuery(f"sum {by} ({selector(S.TRITON_FAILURES, **m)}) / sum {by} ({selector(S.TRITON_REQUESTS, **m)})",
                          by_labels, "ratio")
    if series_key == "inferences":
        return ChartQuery(f"sum {by} ({selector(S.TRITON_INFERENCES, **m)})", by_labels, "inferences/s")
    if series_key == "batch_size":
        return ChartQuery(_weighted_batch(by, **m), by_labels, "")
    if series_key == "queue_share":
        return ChartQuery(_weighted_queue(by, **m), by_labels, "ratio")
    if series_key.startswith("latency_"):
        # Triton's latency is a summary: per server only, never aggregated across servers.
        quantile = {"latency_p50": S.TRITON_LATENCY_P50, "latency_p95": S.TRITON_LATENCY_P95,
                    "latency_p99": S.TRITON_LATENCY_P99}[series_key]
        labels = tuple(dict.fromkeys(("server", *by_labels)))
        return ChartQuery(f"max {_by(labels)} ({selector(quantile, **m)}) / 1e6", labels, "s")
    raise Unsupported(series_key)


_GATEWAY_LATENCY = {"latency_p50": S.GATEWAY_LATENCY_P50, "latency_p95": S.GATEWAY_LATENCY_P95,
                    "latency_p99": S.GATEWAY_LATENCY_P99}


def chart_query(series_key: str, scope: Scope) -> ChartQuery:
    """The range query behind one chart. Raises Unsupported for a pair that is not charted."""
    if series_key not in CHART_SERIES:
        raise Unsupported(series_key)
    if scope.kind == "fleet":
        if scope.teams is None:  # the platform's own totals
            if series_key == "requests":
                return ChartQuery(S.FLEET_REQUESTS.name, (), "req/s", "all endpoints")
            if series_key == "error_ratio":
                return ChartQuery(S.FLEET_ERROR_RATIO.name, (), "ratio", "all endpoints")
            if series_key == "errors":
                return ChartQuery(f"sum({S.GATEWAY_ERRORS.name})", (), "req/s", "all endpoints")
            raise Unsupported(series_key)
        # A team's view of the fleet: its own endpoints only.
        m = {"endpoint": scope.team_prefixes()}
        req, err = selector(S.GATEWAY_REQUESTS, **m), selector(S.GATEWAY_ERRORS, **m)
        label = "your teams' endpoints"
        if series_key == "requests":
            return ChartQuery(f"sum({req})", (), "req/s", label)
        if series_key == "errors":
            return ChartQuery(f"sum({err})", (), "req/s", label)
        if series_key == "error_ratio":
            return ChartQuery(f"sum({err}) / sum({req})", (), "ratio", label)
        raise Unsupported(series_key)
    if scope.kind == "endpoint":
        m = {"endpoint": Eq(scope.name)}
        by = ("variant", "version")
        req, err = selector(S.GATEWAY_REQUESTS, **m), selector(S.GATEWAY_ERRORS, **m)
        if series_key == "requests":
            return ChartQuery(f"sum {_by(by)} ({req})", by, "req/s")
        if series_key == "errors":
            return ChartQuery(f"sum {_by(by)} ({err})", by, "req/s")
        if series_key == "error_ratio":
            return ChartQuery(f"sum {_by(by)} ({err}) / sum {_by(by)} ({req})", by, "ratio")
        if series_key in _GATEWAY_LATENCY:
            return ChartQuery(f"max by (variant) ({selector(_GATEWAY_LATENCY[series_key], **m)})", ("variant",), "s")
        raise Unsupported(series_key)
    if scope.kind == "model":
        if series_key.startswith("gpu_"):
            raise Unsupported(series_key)
        return _triton(series_key, ("version",), model=Eq(scope.name))
    if scope.kind == "server":
        m = {"server": Eq(scope.name)}
        if series_key == "gpu_utilization":
            return ChartQuery(f"max by (gpu_uuid) ({selector(S.GPU_UTILIZATION, **m)})", ("gpu_uuid",), "ratio")
        if series_key == "gpu_memory":
            used, total = selector(S.GPU_MEMORY_USED, **m), selector(S.GPU_MEMORY_TOTAL, **m)
            expr = (f'label_replace(max by (gpu_uuid) ({used}), "memory", "used", "", "")'
                    f' or label_replace(max by (gpu_uuid) ({total}), "memory", "total", "", "")')
            return ChartQuery(expr, ("gpu_uuid", "memory"), "bytes")
        return _triton(series_key, ("model",), model=scope.team_prefixes(), **m)
    raise Unsupported(scope.kind)


def line_label(query: ChartQuery, labels: Mapping[str, str]) -> str:
    """A line's name in the legend: "canary v3", "triton-1 v2", "vision.fraud-scorer"."""
    if not query.line_labels:
        return query.fixed_label or "value"
    parts = []
    for key in query.line_labels:
        value = labels.get(key, "")
        if not value:
            continue
        parts.append(f"v{value}" if key == "version" else value)
    return " ".join(parts) or "(no label)"


# -- batching insight: instant values per (server, version) of one model --------------------------


@dataclass(frozen=True)
class TritonRates:
    """One (server, model, version) at one instant; None: Prometheus has no value (no traffic)."""

    server: str
    version: str
    requests: float | None
    inferences: float | None
    batch_size: float | None
    queue_share: float | None


_INSIGHT = {"requests": S.TRITON_REQUESTS, "inferences": S.TRITON_INFERENCES,
            "batch_size": S.TRITON_BATCH_SIZE, "queue_share": S.TRITON_QUEUE_SHARE}


def triton_batching_query(model: str, servers: Iterable[str]) -> str:
    """One instant query for the four insight series of `model` on `servers`: each series is
    tagged with a `q` label so that a single round trip brings all four."""
    names = sorted(set(servers))
    m = {"model": Eq(model), "server": Eq(names[0]) if len(names) == 1 else AnyOf(tuple(names))}
    parts = [f'label_replace({selector(s, **m)}, "q", {quote(key)}, "", "")' for key, s in _INSIGHT.items()]
    return " or ".join(parts)


def triton_batching(client: PrometheusClient, model: str, servers: Iterable[str]) -> list[TritonRates]:
    """The insight series now, per (server, version) of `model`. Raises the client's errors."""
    servers = list(servers)
    if not servers:
        return []
    found: dict[tuple[str, str], dict[str, float | None]] = {}
    for v in client.query(triton_batching_query(model, servers)):
        key = (v.labels.get("server", ""), v.labels.get("version", ""))
        found.setdefault(key, {})[v.labels.get("q", "")] = v.value
    return [
        TritonRates(server=s, version=ver, **{k: values.get(k) for k in _INSIGHT})
        for (s, ver), values in sorted(found.items())
    ]


# -- rollout gates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """A gate's reading: `value` (None: no data), the number of requests it rests on and the
    window in seconds it covers."""

    value: float | None
    requests: float
    window_s: int


def gate_query(endpoint: str, variant: str, metric: str, window_s: int) -> str:
    """One instant query: the metric's value over the window (q="value") and the variant's
    request count in it (q="requests")."""
    if metric not in GATE_METRICS:
        raise Unsupported(metric)
    if not isinstance(window_s, int) or isinstance(window_s, bool) or window_s < 1:
        raise ValueError("window_s is a whole number of seconds, at least 1")
    m = {"endpoint": Eq(endpoint), "variant": Eq(variant)}
    w = f"[{window_s}s]"
    if metric == "error_ratio":
        value = (f"sum(sum_over_time({selector(S.GATEWAY_ERRORS, **m)}{w}))"
                 f" / sum(sum_over_time({selector(S.GATEWAY_REQUESTS, **m)}{w}))")
    else:
        value = f"max(avg_over_time({selector(_GATEWAY_LATENCY[metric], **m)}{w}))"
    count = f"sum(increase({selector(GATEWAY_REQUESTS_COUNTER, **m)}{w}))"
    return f'label_replace({value}, "q", "value", "", "") or label_replace({count}, "q", "requests", "", "")'


def gate_sample(client: PrometheusClient, endpoint: str, variant: str, metric: str, window_s: int) -> Sample:
    """Evaluate one gate metric for one variant of an endpoint over the last `window_s` seconds.

    `metric`: error_ratio (5xx share, weighted by traffic) or latency_p50/p95/p99 (the mean of
    the one-minute quantile over the window, in seconds). No traffic: value None, requests 0.
    """
    found = {v.labels.get("q"): v.value for v in client.query(gate_query(endpoint, variant, metric, window_s))}
    requests = found.get("requests") or 0.0
    return Sample(value=found.get("value") if requests > 0 else None, requests=requests, window_s=window_s)
