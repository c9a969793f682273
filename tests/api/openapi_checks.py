"""In-process calls checked against the served OpenAPI schema (/api/schema/), with Schemathesis."""
import contextlib

import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

SCHEMA_URL = "/api/schema/?format=json"

# No 5xx, and the status code, content type, headers and body are the ones the schema declares.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@contextlib.contextmanager
def in_process_requests():
    """Keep the test's transaction open across WSGI requests, as Django's test client does: the
    request signals would otherwise close the connection that holds it."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def load_schema(config=None):
    with in_process_requests():  # serving the schema needs no database
        return schemathesis.openapi.from_wsgi(SCHEMA_URL, get_wsgi_application(), config=config)
