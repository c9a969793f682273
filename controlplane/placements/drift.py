"""Compare what a placement wants with what one Triton server reports. Pure: no ORM, no I/O.

Triton's effective config is a superset of what we send: it fills in defaults (``format``,
``optimization``...), names instance groups and resolves ``KIND_AUTO`` to the device it chose. So
our rendered config is compared as a subset of Triton's, with those rewrites allowed. A field
we own but leave out (such as ``dynamic_batching``) must also be absent on the server: otherwise
someone loaded another config there.
"""
import json

from controlplane.placements.models import Drift

READY, LOADING, UNLOADING, UNAVAILABLE = "READY", "LOADING", "UNLOADING", "UNAVAILABLE"
BUSY = (LOADING, UNLOADING)
LOADED = (READY, LOADING, UNLOADING)
# Top-level fields Switchyard owns that change behaviour when present.
OWNED_OPTIONAL = ("dynamic_batching", "sequence_batching", "model_warmup", "response_cache", "rate_limiter")
MAX_DETAILS = 5


def _version(row) -> int | None:
    try:
        return int(row.get("version"))
    except (TypeError, ValueError):
        return None


def versions_in(rows: list[dict], *states: str) -> set[int]:
    return {v for row in rows if row.get("state") in states and (v := _version(row)) is not None}


def is_busy(rows: list[dict]) -> bool:
    return any(row.get("state") in BUSY for row in rows)


def is_loaded(rows: list[dict]) -> bool:
    return any(row.get("state") in LOADED for row in rows)


def rows_by_name(index: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in index:
        grouped.setdefault(row.get("name") or "", []).append(row)
    return grouped


def _compact(value) -> str:
    text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _empty(value) -> bool:
    return value in (None, "", [], {}, 0, False)


def _scalar_equal(path: str, want, have) -> bool:
    if path.endswith(".kind") and want == "KIND_AUTO":
        return True  # Triton resolves it to the device it picked
    if isinstance(want, bool) or isinstance(have, bool):
        return want == have
    if isinstance(want, (int, float)) and isinstance(have, (int, float, str)):
        try:
            return float(have) == float(want)  # protobuf JSON prints 64-bit integers as strings
        except ValueError:
            return False
    return want == have


def _compare(path: str, want, have, out: list[str]) -> None:
    if isinstance(want, dict):
        if not isinstance(have, dict):
            out.append(f"{path}: ours {_compact(want)}, server has {_compact(have)}")
            return
        for key, value in want.items():
            where = f"{path}.{key}" if path else key
            if key not in have:
                if not _empty(value):
                    out.append(f"{where}: ours {_compact(value)}, server has none")
                continue
            _compare(where, value, have[key], out)
    elif isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            out.append(f"{path}: ours {_compact(want)}, server has {_compact(have)}")
            return
        for i, (w, h) in enumerate(zip(want, have)):
            _compare(f"{path}[{i}]", w, h, out)
    elif not _scalar_equal(path, want, have):
        out.append(f"{path}: ours {_compact(want)}, server has {_compact(have)}")


def config_differences(wanted: dict, effective: dict) -> list[str]:
    """What differs between the config we send and the one Triton serves, one line each."""
    out: list[str] = []
    _compare("", wanted, effective, out)
    for key in OWNED_OPTIONAL:
        if key not in wanted and not _empty(effective.get(key)):
            out.append(f"{key}: not in ours, server has {_compact(effective[key])}")
    return out


def _states(rows: list[dict]) -> str:
    parts = []
    for row in sorted(rows, key=lambda r: _version(r) or 0):
        if not row.get("state"):
            continue
        text = f"v{row.get('version')} {row['state']}"
        reason = (row.get("reason") or "").strip()
        if reason and reason != "unloaded":
            text += f" ({reason.splitlines()[0][:160]})"
        parts.append(text)
    return ", ".join(parts) or "not loaded"


def classify(*, versions: list[int], config: dict, rows: list[dict], effective: dict | None,
             config_error: str = "") -> tuple[str, str]:
    """(drift, detail) of one placement target from the server's index rows for its model and
    the effective config (None when no version is READY or it could not be read)."""
    wanted = set(versions)
    ready = versions_in(rows, READY)
    if not ready:
        return Drift.MISSING, _states(rows)
    if ready != wanted:
        fmt = lambda vs: ",".join(f"v{v}" for v in sorted(vs)) or "none"  # noqa: E731
        return Drift.WRONG_VERSION, f"READY {fmt(ready)}, wanted {fmt(wanted)}; {_states(rows)}"
    if effective is None:
        return Drift.NONE, f"config not readable: {config_error}" if config_error else ""
    differences = config_differences(config, effective)
    if differences:
        more = f" (+{len(differences) - MAX_DETAILS} more)" if len(differences) > MAX_DETAILS else ""
        return Drift.WRONG_CONFIG, "; ".join(differences[:MAX_DETAILS]) + more
    return Drift.NONE, ""


def extras(index: list[dict], wanted_names: set[str]) -> list[dict]:
    """Models loaded (or loading) on a server that no active placement wants there."""
    found = []
    for name, rows in sorted(rows_by_name(index).items()):
        if name and name not in wanted_names and is_loaded(rows):
            found.append({"model": name, "versions": _states(rows)})
    return found
