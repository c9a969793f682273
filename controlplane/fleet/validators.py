import re
from urllib.parse import urlparse

from django.core.exceptions import ValidationError

_HOST_PORT_RE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?):(\d{1,5})$")
_LABEL_KEY_RE = re.compile(r"^[a-z0-9]([a-z0-9._/-]{0,62})$")


def validate_http_url(value: str) -> None:
    parsed = urlparse(value or "")
    if parsed.scheme not in ("http", "https"):
        raise ValidationError(f"Use an http:// or https:// URL, not {parsed.scheme or 'no'} scheme.", code="scheme")
    if not parsed.hostname:
        raise ValidationError("The URL has no host.", code="host")
    if parsed.username or parsed.password:
        raise ValidationError("Do not put credentials in the URL.", code="credentials")
    try:
        parsed.port
    except ValueError:
        raise ValidationError("The URL's port is not a number from 1 to 65535.", code="port") from None


def validate_grpc_address(value: str) -> None:
    match = _HOST_PORT_RE.match(value or "")
    if not match or not 1 <= int(match.group(3)) <= 65535:
        raise ValidationError("Give the gRPC endpoint as host:port, such as triton-1:8001.", code="grpc")


def validate_labels(value) -> None:
    if not isinstance(value, dict):
        raise ValidationError("Labels must be an object of string keys and string values.")
    for key, val in value.items():
        if not _LABEL_KEY_RE.match(key):
            raise ValidationError(f"Label key {key!r}: use 1-63 lowercase letters, digits, '.', '_', '/' or '-'.")
        if not isinstance(val, str) or len(val) > 63:
            raise ValidationError(f"Label {key!r}: the value must be a string of at most 63 characters.")
