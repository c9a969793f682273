"""A small client of Switchyard's REST API for the command line. Standard library only.

`ApiClient(url, token).get(path)` and `.post(path, body)` return the decoded JSON answer. A 4xx
answer raises `ApiRefused` (the server said no: bad input, forbidden, not found, a conflict); a
network error, a 5xx or an answer that is not JSON raises `ApiUnavailable` (try again later).
Every request carries `X-Switchyard-Client: cli`, so the audit log records the source as cli.
"""
from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT_S = 30.0
USER_AGENT = "switchyard-cli/0.1"


class ApiError(Exception):
    """Anything that kept a request from being answered with success."""


class ApiRefused(ApiError):
    """The server answered 4xx. ``fields`` maps a request field to its messages."""

    def __init__(self, status: int, detail: str, fields: dict[str, list[str]] | None = None):
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.fields = fields or {}


class ApiUnavailable(ApiError):
    """The server could not be reached, failed (5xx) or answered something that is not JSON."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


def base_url(url: str) -> str:
    """The server's root from what people set: `https://host`, `https://host/` or `https://host/api/v1`."""
    url = url.strip().rstrip("/")
    url = url.removesuffix(API_PREFIX)
    return url


def _fields(raw: Any) -> dict[str, list[str]]:
    if not isinstance(raw, dict):
        return {}
    out: dict[str, list[str]] = {}
    for key, value in raw.items():
        out[str(key)] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return out


def _refusal(status: int, body: bytes, reason: str) -> ApiRefused:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = None
    if isinstance(data, dict):
        detail = data.get("detail")
        fields = _fields(data.get("fields"))
        if not isinstance(detail, str) or not detail:
            detail = "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items()) or reason or f"HTTP {status}"
        return ApiRefused(status, detail, fields)
    text = body.decode("utf-8", "replace").strip()
    return ApiRefused(status, f"{reason or 'HTTP ' + str(status)}" + (f": {text[:200]}" if text else ""))


class ApiClient:
    """One Switchyard server, reached with a bearer token."""

    def __init__(self, url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT_S, client: str = "cli"):
        parsed = urllib.parse.urlsplit(base_url(url))
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = base_url(url)
        self.token = token
        self.timeout = timeout
        self.client = client

    def get(self, path: str, *, timeout: float | None = None) -> Any:
        return self.request("GET", path, timeout=timeout)

    def post(self, path: str, body: dict | None = None, *, timeout: float | None = None) -> Any:
        return self.request("POST", path, {} if body is None else body, timeout=timeout)

    def _address(self, path: str) -> str:
        if not path.startswith("/"):
            path = "/" + path
        if not path.startswith(API_PREFIX + "/"):
            path = API_PREFIX + path
        return self.url + path

    def request(self, method: str, path: str, body: dict | None = None, *, timeout: float | None = None) -> Any:
        address = self._address(path)
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "X-Switchyard-Client": self.client,
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(address, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout if timeout is None else timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read() or b""
            if 400 <= status < 500:
                raise _refusal(status, raw, exc.reason if isinstance(exc.reason, str) else "") from None
            raise ApiUnavailable(f"{method} {address}: the server answered {status} {exc.reason}", status) from None
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            why = getattr(exc, "reason", None) or exc
            raise ApiUnavailable(f"{method} {address}: {why}") from None
        try:
            return json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError):
            raise ApiUnavailable(f"{method} {address}: the answer ({status}) is not JSON", status) from None
