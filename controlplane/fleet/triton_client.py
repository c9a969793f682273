"""The one narrow module through which Switchyard talks to Triton (HTTP/REST v2).

It wraps `tritonclient.http`, which runs on gevent. Each call opens its own tritonclient
connection and closes it afterwards, so a `TritonClient` holds no sockets, is safe to share
between threads (the prober fans out with a ThreadPoolExecutor) and needs no cleanup.

Every call has a deadline. Failures surface as exactly two kinds of `TritonError`:
`TritonUnavailable` (the server could not be reached or did not answer in time) and
`TritonRequestError` (it answered with an error, carrying Triton's text and HTTP status).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import gevent
import tritonclient.http as triton_http
from gevent._hub_local import get_hub_if_exists
from gevent.resolver.blocking import Resolver as BlockingResolver
from geventhttpclient.response import HTTPParseError
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

DEFAULT_TIMEOUT = 5.0  # seconds, for health, index, config, stats and metrics calls
DEFAULT_LOAD_TIMEOUT = 300.0  # loads pull artifacts and start backends; they can take minutes

T = TypeVar("T")


class TritonError(Exception):
    """A Triton call failed.

    `message` is the reason (Triton's own text when it answered), `operation` the call such as
    "load fraud-scorer", `url` the server and `status` the HTTP status if there was one.
    """

    def __init__(self, message: str, *, url: str, operation: str = "", status: int | None = None):
        super().__init__(f"{operation + ': ' if operation else ''}{message} ({url})")
        self.message = message
        self.url = url
        self.operation = operation
        self.status = status


class TritonUnavailable(TritonError):
    """The server could not be reached: connection refused, DNS failure, TLS failure or timeout."""


class TritonRequestError(TritonError):
    """The server answered with an error; `message` is Triton's own error text."""


class TritonClient:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        load_timeout: float = DEFAULT_LOAD_TIMEOUT,
        connect_timeout: float | None = None,
        insecure_tls: bool = False,
    ):
        """`url` is the HTTP endpoint, e.g. "http://127.0.0.1:8000" or "https://host:8443"."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s)://host:port URL for Triton, got {url!r}")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self._target = f"{parts.netloc}{parts.path.rstrip('/')}"
        self._ssl = parts.scheme == "https"
        self._ip_literal = _is_ip(parts.hostname)
        self.timeout = timeout
        self.load_timeout = load_timeout
        self.connect_timeout = connect_timeout if connect_timeout is not None else min(timeout, 3.0)
        self._insecure_tls = insecure_tls

    def __repr__(self) -> str:
        return f"TritonClient({self.url!r})"

    # Nothing is held between calls; these exist so callers can use `with` uniformly.
    def close(self) -> None:
        pass

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- server ---------------------------------------------------------------------------
    def live(self) -> bool:
        """True if the server answers /v2/health/live with 200. Raises TritonUnavailable if down."""
        return self._call("live", lambda c: c.is_server_live())

    def ready(self) -> bool:
        """True if /v2/health/ready answers 200 (all loaded models ready, with strict readiness)."""
        return self._call("ready", lambda c: c.is_server_ready())

    def metadata(self) -> dict:
        """{"name", "version", "extensions"} of the server."""
        meta = self._call("metadata", lambda c: c.get_server_metadata())
        return {"name": meta.get("name"), "version": meta.get("version"),
                "extensions": list(meta.get("extensions", []))}

    def index(self) -> list[dict]:
        """The repository index: [{"name", "version", "state", "reason"}].

        A model that was never loaded has only a name; its version, state and reason are None.
        """
        rows = self._call("index", lambda c: c.get_model_repository_index())
        return [
            {"name": r.get("name"), "version": r.get("version") or None,
             "state": r.get("state") or None, "reason": r.get("reason") or None}
            for r in rows
        ]

    # -- models ---------------------------------------------------------------------------
    def load(self, model: str, *, config: Mapping | None = None,
             files: Mapping[str, bytes] | None = None) -> float:
        """Load (or reload) `model`; returns the wall time in seconds.

        `config` is a ModelConfig as a dict (protobuf JSON names); it replaces config.pbtxt for
        this load only. `files` maps paths inside the model directory ("1/model.py") to bytes.
        """
        _check_model_name(model)
        config_json = None
        if config is not None:
            if not isinstance(config, Mapping):
                raise TypeError(f"config must be a dict, not {type(config).__name__}")
            config_json = json.dumps(config)
        file_params = None
        if files is not None:
            if config is None:
                raise ValueError("Triton needs a config override when files are given")
            file_params = {}
            for path, content in files.items():
                rel = path.removeprefix("file:")
                if not rel or rel.startswith("/") or ".." in rel.split("/"):
                    raise ValueError(f"bad file path in model directory: {path!r}")
                if not isinstance(content, (bytes, bytearray)):
                    raise TypeError(f"file {path!r} must be bytes")
                file_params[f"file:{rel}"] = bytes(content)
        started = time.monotonic()
        self._call(f"load {model}", lambda c: c.load_model(model, config=config_json, files=file_params),
                   timeout=self.load_timeout)
        return time.monotonic() - started

    def unload(self, model: str, *, unload_dependents: bool = False) -> None:
        """Ask Triton to unload `model`. Returns when the request is accepted (unloading is async)."""
        _check_model_name(model)
        self._call(f"unload {model}",
                   lambda c: c.unload_model(model, unload_dependents=unload_dependents),
                   timeout=self.load_timeout)

    def model_ready(self, model: str, version: str | int | None = None) -> bool:
        _check_model_name(model)
        v = "" if version is None else str(version)
        return self._call(f"model_ready {model}", lambda c: c.is_model_ready(model, v))

    def model_config(self, model: str) -> dict:
        """The effective config Triton is serving (compare with the desired one to find drift)."""
        _check_model_name(model)
        return self._call(f"model_config {model}", lambda c: c.get_model_config(model))

    def stats(self, model: str, version: str | int | None = None) -> list[dict]:
        """Cumulative inference statistics, one dict per loaded version (Triton's model_stats)."""
        _check_model_name(model)
        v = "" if version is None else str(version)
        body = self._call(f"stats {model}", lambda c: c.get_inference_statistics(model, v))
        return list(body.get("model_stats", []))

    def warm_up(self, model: str, version: int, inputs: list[dict], *, max_batch_size: int = 0) -> list[str]:
        """One inference of zeros through ``version`` (a deployment's smoke test); returns the
        output names. ``inputs`` are the registry's tensor specs ({name, data_type, dims}); a
        variable dimension (-1) becomes 1, and a batching model gets a batch of one."""
        import numpy as np  # tritonclient's own dependency; only warm-ups need it here

        _check_model_name(model)
        tensors = []
        for spec in inputs:
            shape = [1 if d < 0 else d for d in spec.get("dims", [])]
            if max_batch_size > 0:
                shape = [1, *shape]
            datatype = str(spec.get("data_type", "TYPE_FP32")).removeprefix("TYPE_")
            datatype = "BYTES" if datatype == "STRING" else datatype
            tensor = triton_http.InferInput(spec["name"], shape, datatype)
            if datatype == "BYTES":
                tensor.set_data_from_numpy(np.full(shape, b"", dtype=np.object_), binary_data=False)
            elif datatype == "BOOL":
                tensor.set_data_from_numpy(np.zeros(shape, dtype=bool), binary_data=False)
            else:
                tensor.set_data_from_numpy(np.zeros(shape, dtype=triton_to_np_dtype(datatype)), binary_data=False)
            tensors.append(tensor)
        result = self._call(f"warm-up {model} v{version}",
                            lambda c: c.infer(model, tensors, model_version=str(version)))
        return [o.get("name") for o in result.get_response().get("outputs", [])]

    def metrics(self, metrics_url: str) -> str:
        """The Prometheus text from a metrics URL such as http://127.0.0.1:8002/metrics."""
        return fetch_metrics(metrics_url, timeout=self.timeout)

    # -- plumbing -------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[Any], T], *, timeout: float | None = None) -> T:
        timeout = self.timeout if timeout is None else timeout
        # gevent gives every native thread its own hub, never freed, whose default resolver runs
        # a helper thread: one thread and two fds leak per short-lived caller thread. So a hub
        # made for this call is destroyed afterwards (a caller's own hub, in a gevent app, is
        # left alone). An IP address needs no DNS, so skip the helper thread (~1 ms) for it;
        # a hostname keeps the threaded resolver so that the deadline also bounds DNS.
        own_hub = get_hub_if_exists() is None
        if own_hub:
            hub = gevent.get_hub()
            if self._ip_literal:
                hub.resolver = BlockingResolver(hub)
        client = None
        try:
            # One deadline for the whole call; tritonclient's own timeouts are per socket op.
            with gevent.Timeout(timeout):
                client = triton_http.InferenceServerClient(
                    self._target, ssl=self._ssl, insecure=self._insecure_tls, concurrency=1,
                    connection_timeout=self.connect_timeout, network_timeout=timeout,
                )
                return fn(client)
        except InferenceServerException as e:
            status = int(e.status()) if (e.status() or "").isdigit() else None
            raise TritonRequestError(e.message(), url=self.url, operation=what, status=status) from None
        except gevent.Timeout:
            raise TritonUnavailable(f"no answer within {timeout:g} s", url=self.url, operation=what) from None
        except (OSError, HTTPParseError) as e:  # refused, reset, DNS, TLS, socket timeout
            raise TritonUnavailable(f"{type(e).__name__}: {e}", url=self.url, operation=what) from None
        except ValueError as e:  # a body that is not the JSON Triton should send
            raise TritonRequestError(f"unreadable response: {e}", url=self.url, operation=what) from None
        except Exception as e:  # anything else from the client stack, never a raw exception
            raise TritonError(f"{type(e).__name__}: {e}", url=self.url, operation=what) from e
        finally:
            if client is not None:
                try:
                    client.close()
                except Exception:
                    pass
            if own_hub:
                gevent.get_hub().destroy(destroy_loop=True)


def fetch_metrics(metrics_url: str, *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """GET a Prometheus text page, mapping failures onto the TritonError family."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=timeout) as resp:
            return resp.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as e:
        raise TritonRequestError(f"HTTP {e.code} {e.reason}", url=metrics_url, operation="metrics",
                                 status=e.code) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise TritonUnavailable(str(reason), url=metrics_url, operation="metrics") from None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_model_name(model: str) -> None:
    # tritonclient URL-quotes the name, but a "/" can never name a model directory.
    if not isinstance(model, str) or not model or "/" in model:
        raise ValueError(f"invalid Triton model name: {model!r}")
