"""Scrape targets in Prometheus's http_sd format, from servers and gateway replicas. Pure: no ORM.

http_sd wants a JSON list of {"targets": ["host:port"], "labels": {...}}. Label names must match
[a-zA-Z_][a-zA-Z0-9_]* and names starting with "__" are Prometheus's own (`__metrics_path__`,
`__scheme__`, `__param_<name>`), so a server's own labels are sanitized and prefixed `label_`
and can never overwrite a reserved label. Values are any string: JSON carries them safely.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit

from controlplane.metrics.series import KIND_GATEWAY, KIND_TRITON

KIND_LABEL = "switchyard_kind"
USER_LABEL_PREFIX = "label_"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_HOST = re.compile(r"[A-Za-z0-9._-]{1,253}")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]{2,45}")


def label_name(key: str) -> str:
    """A server label's key as a Prometheus label name: `zone` -> `label_zone`, `topology.k8s/zone`
    -> `label_topology_k8s_zone`. The prefix makes it valid (never starts with a digit) and keeps
    it clear of the reserved names."""
    return USER_LABEL_PREFIX + _INVALID.sub("_", key)


def user_labels(labels: dict) -> dict[str, str]:
    """Sanitized server labels. Two keys that sanitize alike (`a-b`, `a.b`): the first in sorted
    order wins, so the answer is the same on every call."""
    out: dict[str, str] = {}
    for key in sorted(labels):
        name = label_name(str(key))
        if name not in out:
            out[name] = str(labels[key])
    return out


def url_target(url: str) -> tuple[str, dict[str, str]] | None:
    """(host:port, the labels that locate /metrics on it) for a metrics URL, or None if unusable."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname
    if ":" in host:  # IPv6
        if not _IPV6.fullmatch(host):
            return None
        host = f"[{host}]"
    elif not _HOST.fullmatch(host):
        return None
    port = port or (443 if parts.scheme == "https" else 80)
    located = {"__scheme__": parts.scheme}
    if parts.path:
        located["__metrics_path__"] = parts.path
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if re.fullmatch(r"[a-zA-Z0-9_]+", name):
            located[f"__param_{name}"] = value
    return f"{host}:{port}", located


def triton_groups(servers: Iterable[dict]) -> list[dict]:
    """One target group per server with a metrics URL. Each server is a dict with name, pool,
    gpu_type, labels and metrics_url."""
    groups = []
    for server in servers:
        located = url_target(server["metrics_url"]) if server["metrics_url"] else None
        if located is None:
            continue
        address, labels = located
        labels = {**user_labels(server["labels"] or {}), **labels, KIND_LABEL: KIND_TRITON,
                  "server": server["name"], "pool": server["pool"], "gpu_type": server["gpu_type"]}
        groups.append({"targets": [address], "labels": labels})
    return groups


def gateway_target(address: str) -> tuple[str, dict[str, str]] | None:
    """A gateway's advertised address (`http://host:8080`, as `switchyard gateway` reports it, or a
    bare `host:8080`) as (host:port, labels); its metrics are at <address>/metrics."""
    address = address.strip()
    if "://" not in address:
        address = "http://" + address
    located = url_target(address)
    if located is None:
        return None
    target, labels = located
    labels["__metrics_path__"] = labels.get("__metrics_path__", "").rstrip("/") + "/metrics"
    return target, labels


def gateway_groups(replicas: Iterable[tuple[str, str]]) -> list[dict]:
    """One target per gateway address. A replica reports once per worker (`<replica>/w<k>`), but
    its workers share one port and its /metrics sums them all: scraping each worker's report would
    count everything N times. `replicas` is (replica_id, address) pairs."""
    by_target: dict[str, tuple[str, dict[str, str]]] = {}
    for replica_id, address in replicas:
        located = gateway_target(address) if address else None
        if located is None:
            continue
        target, labels = located
        replica = re.sub(r"/w\d+$", "", replica_id)
        key = f"{labels['__scheme__']}://{target}{labels['__metrics_path__']}"
        if key not in by_target or replica < by_target[key][0]:
            by_target[key] = (replica, {"targets": [target], "labels": {
                **labels, KIND_LABEL: KIND_GATEWAY, "replica": replica}})
    return [group for _, (_, group) in sorted(by_target.items())]
