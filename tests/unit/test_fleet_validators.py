import pytest
from django.core.exceptions import ValidationError

from controlplane.fleet.validators import validate_grpc_address, validate_http_url, validate_labels


@pytest.mark.parametrize("url", ["http://triton-1:8000", "https://10.0.0.5:8443", "http://[::1]:8000"])
def test_http_urls_pass(url):
    validate_http_url(url)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://x:70", "ftp://x", "http://", "triton:8000", "http://u:p@x:1", "http://x:99999"])
def test_other_urls_fail(url):
    with pytest.raises(ValidationError):
        validate_http_url(url)


def test_grpc_address():
    validate_grpc_address("triton-1:8001")
    for bad in ["grpc://x:1", "x", "x:0", "x:700000"]:
        with pytest.raises(ValidationError):
            validate_grpc_address(bad)


def test_labels():
    validate_labels({"zone": "eu-west-1a", "gpu.class": "a100"})
    for bad in [{"Zone": "a"}, {"zone": 3}, ["zone"], {"zone": "x" * 64}]:
        with pytest.raises(ValidationError):
            validate_labels(bad)
