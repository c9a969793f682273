"""Errors that services raise. The API and the UI turn them into 4xx answers.

Validation problems use Django's ``ValidationError`` with a dict keyed by field name.
"""


class ServiceError(Exception):
    status_code = 400

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class Conflict(ServiceError):
    """The request clashes with existing state (HTTP 409)."""

    status_code = 409


class PayloadTooLarge(ServiceError):
    status_code = 413


class UpstreamError(ServiceError):
    """A dependency such as S3 failed while we were using it (HTTP 502)."""

    status_code = 502
