"""The one narrow module through which Switchyard talks to Prometheus (its HTTP API v1).

Instant queries (`/api/v1/query`) and range queries (`/api/v1/query_range`), each with a deadline
that is also passed to Prometheus, so it stops evaluating when we stop waiting. Any engine that
speaks the same API (Thanos, Mimir, VictoriaMetrics) works. Nothing is held between calls.

Failures surface as exactly three kinds of `MetricsError`: `MetricsNotConfigured` (no URL is set),
`PrometheusUnavailable` (no answer: refused, DNS, timeout, a 5xx without Prometheus's error body)
and `PrometheusError` (Prometheus answered with an error; `message` is its own text).

"No data" is never zero: a series without a value is left out of the result, and a NaN or an
infinite value (a ratio over no traffic) reads as None.
"""

from __future__ import annotations

import http.client
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from django.conf import settings

DEFAULT_TIMEOUT = 2.0  # seconds; a web request may wait on this, so it stays short
MAX_POINTS = 1000  # per series, for a chart; Prometheus itself refuses above 11,000
MIN_STEP = 5  # seconds: below the rules' evaluation interval a chart only repeats points
# Steps a range query may use: round numbers, so that points line up across charts and reloads.
STEPS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_MAX_BODY = 32 * 1024 * 1024  # a sane cap on what we read back


class MetricsError(Exception):
    """A metrics query could not be answered. `message` says why, in words for a person."""

    def __init__(self, message: str, *, url: str = "", query: str = ""):
        super().__init__(message if not url else f"{message} ({url})")
        self.message = message
        self.url = url
        self.query = query


class MetricsNotConfigured(MetricsError):
    """SWITCHYARD_PROMETHEUS_URL is empty: Switchyard has no Prometheus to ask."""


class PrometheusUnavailable(MetricsError):
    """Prometheus could not be reached or did not answer in time."""


class PrometheusError(MetricsError):
    """Prometheus answered with an error; `message` is its text, `error_type` its errorType."""

    def __init__(self, message: str, *, url: str = "", query: str = "", error_type: str = "", status: int | None = None):
        super().__init__(message, url=url, query=query)
        self.error_type = error_type
        self.status = status


@dataclass(frozen=True)
class Vector:
    """One series of an instant query: its labels and its value (None: NaN or infinite)."""

    labels: dict[str, str]
    value: float | None
    at: float


@dataclass(frozen=True)
class Matrix:
    """One series of a range query: its labels and its (time, value) points, in time order.
    Times with no sample are missing (no point), never a zero."""

    labels: dict[str, str]
    points: list[tuple[float, float | None]]


def prometheus_url() -> str:
    return (settings.SWITCHYARD_PROMETHEUS_URL or "").strip()


def prometheus_timeout() -> float:
    return float(settings.SWITCHYARD_PROMETHEUS_TIMEOUT_SECONDS)


def client_from_settings(*, max_timeout: float | None = None) -> PrometheusClient:
    """The client for the configured Prometheus; MetricsNotConfigured when there is none.
    `max_timeout` shortens the deadline for a caller that must answer fast."""
    url = prometheus_url()
    if not url:
        raise MetricsNotConfigured("Metrics are not configured (SWITCHYARD_PROMETHEUS_URL is empty).")
    timeout = prometheus_timeout() if max_timeout is None else min(prometheus_timeout(), max_timeout)
    return PrometheusClient(url, timeout=timeout)


def choose_step(range_seconds: float, *, max_points: int = MAX_POINTS, min_step: int = MIN_STEP) -> int:
    """The smallest step from STEPS, at least `min_step`, that keeps a range query of
    `range_seconds` at or below `max_points` points per series (both ends included)."""
    if range_seconds <= 0:
        raise ValueError("range_seconds must be above 0")
    if max_points < 2:
        raise ValueError("max_points must be at least 2")
    need = range_seconds / (max_points - 1)
    for step in STEPS:
        if step >= min_step and step >= need:
            return step
    return math.ceil(need / STEPS[-1]) * STEPS[-1]


def aligned_range(range_seconds: float, step: int, *, now: float | None = None) -> tuple[int, int]:
    """(start, end) of a chart ending now: both on a multiple of `step`, so the points of the
    same chart asked a few seconds apart fall on the same times (and caches can reuse them)."""
    now = time.time() if now is None else now
    end = int(now // step) * step
    start = end - math.ceil(range_seconds / step) * step
    return start, end


class PrometheusClient:
    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT):
        """`url` is Prometheus's base URL, e.g. "http://127.0.0.1:9090" (a path prefix is kept)."""
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s)://host:port URL for Prometheus, got {url!r}")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.timeout = float(timeout)

    def __repr__(self) -> str:
        return f"PrometheusClient({self.url!r})"

    def query(self, promql: str, *, at: float | None = None) -> list[Vector]:
        """An instant query. Series without a value are absent from the list; an empty list is
        "no data", which callers must not read as 0. A scalar answer is one unlabelled Vector."""
        params = {"query": promql}
        if at is not None:
            params["time"] = _fmt_time(at)
        data = self._call("/api/v1/query", params, promql)
        return parse_vector(data)

    def query_range(self, promql: str, *, start: float, end: float, step: float) -> list[Matrix]:
        """A range query from `start` to `end` (seconds since the epoch) every `step` seconds."""
        if step <= 0 or end < start:
            raise ValueError("a range query needs step > 0 and end >= start")
        if (end - start) / step + 1 > 11_000:
            raise ValueError("more than 11,000 points per series: choose a larger step (see choose_step)")
        params = {"query": promql, "start": _fmt_time(start), "end": _fmt_time(end), "step": f"{step:g}"}
        data = self._call("/api/v1/query_range", params, promql)
        return parse_matrix(data)

    # -- plumbing -------------------------------------------------------------------------
    def _call(self, path: str, params: dict[str, str], promql: str) -> dict:
        # Prometheus stops evaluating at its own timeout; ours is a little longer for the transfer.
        body = urllib.parse.urlencode({**params, "timeout": f"{self.timeout:g}s"}).encode()
        request = urllib.request.Request(
            self.url + path, data=body, method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        )
        deadline = time.monotonic() + self.timeout
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                raw = _read(resp, deadline)
                status = resp.status
        except urllib.error.HTTPError as e:
            # Prometheus explains 400 (bad_data), 422 (execution), 503 (timeout, canceled) in JSON.
            try:
                raw = _read(e, deadline)
            except (OSError, http.client.HTTPException, TimeoutError):
                raw = b""
            status = e.code
            parsed = _json_or_none(raw)
            if isinstance(parsed, dict) and parsed.get("status") == "error":
                raise PrometheusError(str(parsed.get("error") or f"HTTP {status}"), url=self.url, query=promql,
                                      error_type=str(parsed.get("errorType") or ""), status=status) from None
            if status >= 500 or status in (404, 408, 429):  # a proxy in front, or not Prometheus at all
                raise PrometheusUnavailable(f"HTTP {status} {e.reason}", url=self.url, query=promql) from None
            raise PrometheusError(f"HTTP {status} {e.reason}", url=self.url, query=promql, status=status) from None
        except TimeoutError:
            raise PrometheusUnavailable(f"no answer within {self.timeout:g} s", url=self.url, query=promql) from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, TimeoutError):
                raise PrometheusUnavailable(f"no answer within {self.timeout:g} s", url=self.url, query=promql) from None
            raise PrometheusUnavailable(str(reason), url=self.url, query=promql) from None
        except (OSError, http.client.HTTPException) as e:  # reset, a broken answer
            raise PrometheusUnavailable(f"{type(e).__name__}: {e}", url=self.url, query=promql) from None
        parsed = _json_or_none(raw)
        if not isinstance(parsed, dict) or parsed.get("status") not in ("success", "error"):
            raise PrometheusError(f"not a Prometheus answer (HTTP {status})", url=self.url, query=promql, status=status)
        if parsed["status"] == "error":
            raise PrometheusError(str(parsed.get("error") or "error"), url=self.url, query=promql,
                                  error_type=str(parsed.get("errorType") or ""), status=status)
        data = parsed.get("data")
        if not isinstance(data, dict):
            raise PrometheusError("answer without data", url=self.url, query=promql, status=status)
        return data


def _read(resp, deadline: float) -> bytes:
    """Read the body in chunks, giving up at the deadline (the socket timeout is per read)."""
    chunks, size = [], 0
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("deadline passed while reading the answer")
        chunk = resp.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > _MAX_BODY:
            raise http.client.HTTPException(f"answer larger than {_MAX_BODY} bytes")
        chunks.append(chunk)


def _json_or_none(raw: bytes):
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _fmt_time(t: float) -> str:
    return f"{t:.3f}"


def _number(raw) -> float | None:
    """Prometheus sends values as strings: "1.5", "NaN", "+Inf". Only finite ones are values."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def parse_vector(data: dict) -> list[Vector]:
    """`data` of an instant query's answer (resultType vector or scalar) -> Vectors."""
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return [Vector(labels={}, value=_number(result[1]), at=float(result[0]))]
    if kind != "vector" or not isinstance(result, list):
        raise PrometheusError(f"expected a vector, got {kind!r}")
    out = []
    for item in result:
        at, raw = item.get("value") or (None, None)
        out.append(Vector(labels=dict(item.get("metric") or {}), value=_number(raw), at=float(at or 0)))
    return out


def parse_matrix(data: dict) -> list[Matrix]:
    """`data` of a range query's answer (resultType matrix) -> Matrices, points in time order."""
    kind, result = data.get("resultType"), data.get("result")
    if kind != "matrix" or not isinstance(result, list):
        raise PrometheusError(f"expected a matrix, got {kind!r}")
    return [
        Matrix(labels=dict(item.get("metric") or {}),
               points=[(float(t), _number(v)) for t, v in item.get("values") or []])
        for item in result
    ]
