"""S3 access for model artifacts. Only registry services import this module."""
import functools
import hashlib
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.exceptions import ValidationError

from controlplane.common.errors import UpstreamError

_CHUNK = 1024 * 1024


@functools.lru_cache(maxsize=8)
def _client(endpoint_url: str | None):
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3}),
    )


def client():
    return _client(settings.SWITCHYARD_S3_ENDPOINT_URL)


def bucket() -> str:
    return settings.SWITCHYARD_S3_BUCKET


def uri(prefix: str) -> str:
    return f"s3://{bucket()}/{prefix.strip('/')}/"


def parse_uri(value: str, field: str) -> str:
    """Return the key prefix (no trailing slash) of an ``s3://`` URI inside our bucket."""
    parsed = urlparse(value or "")
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValidationError({field: f"{value!r} is not an s3://bucket/prefix/ URI."})
    if parsed.netloc != bucket():
        raise ValidationError({field: f"The artifact must be inside the configured bucket s3://{bucket()}/, not s3://{parsed.netloc}/."})
    if parsed.params or parsed.query or parsed.fragment:
        raise ValidationError({field: "Give a plain s3://bucket/prefix/ URI, without ?, ; or #."})
    prefix = parsed.path.strip("/")
    if not prefix or any(segment in ("", ".", "..") for segment in prefix.split("/")):
        raise ValidationError({field: "Give the prefix of the version directory, such as s3://bucket/path/to/model/3/."})
    return prefix


def _s3_error(field: str, exc: Exception) -> UpstreamError:
    return UpstreamError(field, f"S3 request failed: {exc}")


def list_files(prefix: str, field: str) -> dict[str, int]:
    """{relative path: size} of every object under ``prefix/``."""
    found: dict[str, int] = {}
    try:
        for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket(), Prefix=f"{prefix}/"):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix) + 1:]
                if rel and not rel.endswith("/"):
                    found[rel] = obj["Size"]
    except (BotoCoreError, ClientError) as exc:
        raise _s3_error(field, exc) from exc
    return found


def sha256_of(key: str, field: str) -> str:
    digest = hashlib.sha256()
    try:
        body = client().get_object(Bucket=bucket(), Key=key)["Body"]
        for chunk in iter(lambda: body.read(_CHUNK), b""):
            digest.update(chunk)
    except (BotoCoreError, ClientError) as exc:
        raise _s3_error(field, exc) from exc
    return digest.hexdigest()


def delete_prefix(prefix: str, field: str) -> None:
    keys = [f"{prefix}/{rel}" for rel in list_files(prefix, field)]
    try:
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            client().delete_objects(Bucket=bucket(), Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
    except (BotoCoreError, ClientError) as exc:
        raise _s3_error(field, exc) from exc


def copy_files(source_prefix: str, dest_prefix: str, paths: list[str], field: str) -> None:
    try:
        for rel in paths:
            client().copy({"Bucket": bucket(), "Key": f"{source_prefix}/{rel}"}, bucket(), f"{dest_prefix}/{rel}")
    except (BotoCoreError, ClientError) as exc:
        raise _s3_error(field, exc) from exc


def put_files(dest_prefix: str, contents: dict[str, bytes], field: str) -> None:
    try:
        for rel, data in contents.items():
            client().put_object(Bucket=bucket(), Key=f"{dest_prefix}/{rel}", Body=data)
    except (BotoCoreError, ClientError) as exc:
        raise _s3_error(field, exc) from exc
