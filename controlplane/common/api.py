"""Shared REST API pieces: pagination and one error format.

Every error body is ``{"detail": "<summary>", "fields": {"<field>": ["<message>", ...]}}``;
``fields`` is present whenever the problem can be pinned on an input field.
"""
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from controlplane.common.errors import ServiceError


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


def _flatten(detail, prefix=""):
    """DRF error detail (nested dicts/lists) -> {"field.sub": [messages]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else "body"
            for k, v in _flatten(value, f"{prefix}{name}" if not prefix else f"{prefix}.{name}").items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            out[prefix or "body"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                for k, v in _flatten(item, f"{prefix}[{index}]").items():
                    out.setdefault(k, []).extend(v)
    else:
        out[prefix or "body"] = [str(detail)]
    return out


def _summary(fields: dict[str, list[str]]) -> str:
    return "; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items())


def error_response(status_code: int, fields: dict[str, list[str]] | None = None, detail: str | None = None):
    body = {"detail": detail or _summary(fields or {})}
    if fields:
        body["fields"] = fields
    return Response(body, status=status_code)


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"body": exc.messages}
        return error_response(status.HTTP_400_BAD_REQUEST, {k if k != "__all__" else "body": v for k, v in fields.items()})
    if isinstance(exc, ServiceError):
        return error_response(exc.status_code, {exc.field: [exc.message]})
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, exceptions.ValidationError):
        return error_response(exc.status_code, _flatten(exc.detail))
    if isinstance(exc, exceptions.ParseError):
        return error_response(exc.status_code, {"body": [str(exc.detail)]}, detail=f"Malformed request body: {exc.detail}")
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"])}
    return response


class StrictSerializer(serializers.Serializer):
    """Input serializer that refuses unknown fields, so a typo in CI is an error, not a silent default."""

    def to_internal_value(self, data):
        if hasattr(data, "keys"):
            unknown = sorted(set(data.keys()) - set(self.fields))
            if unknown:
                raise exceptions.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


def validated(serializer_class, request, *, partial: bool = False) -> dict:
    if not hasattr(request.data, "keys"):
        raise exceptions.ValidationError({"body": ["Send a JSON object."]})
    serializer = serializer_class(data=request.data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
