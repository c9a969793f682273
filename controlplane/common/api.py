"""Shared REST API pieces: pagination, one error format, and strict input.

Every error body is ``{"detail": "<summary>", "fields": {"<field>": ["<message>", ...]}}``;
``fields`` is present whenever the problem can be pinned on an input field.

Input serializers use the Strict* fields below: in a JSON body an integer is a JSON integer
within its database column, text is a JSON string, and so on. DRF's own fields coerce ("7" and
7.0 to 7, 7 to "7", "yes" to true). Form and multipart input is all text, so there the integer
field takes digits only.
"""
import math
import re

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.utils import html
from rest_framework.views import exception_handler as drf_exception_handler

from controlplane.common import jsonsafe
from controlplane.common.errors import ServiceError

# PostgreSQL's integer (Django's IntegerField and PositiveIntegerField) and bigint (ids).
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MAX = 2**63 - 1
_DIGITS = re.compile(r"-?[0-9]{1,20}")


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
    if isinstance(exc, (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)):
        return error_response(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, {"body": [_too_large(exc)]})
    if isinstance(exc, exceptions.ParseError):
        return error_response(exc.status_code, {"body": [str(exc.detail)]}, detail=f"Malformed request body: {exc.detail}")
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"])}
    return response


def _too_large(exc) -> str:
    if isinstance(exc, RequestDataTooBig):
        return (f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes. "
                "Upload version files as multipart (files or archive).")
    if isinstance(exc, TooManyFilesSent):
        return f"More than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files; send an archive instead."
    return f"More than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields."


def _from_form(field) -> bool:
    """Whether the serializer's input is form or multipart data (all text), not a JSON body."""
    return html.is_html_input(getattr(field.root, "initial_data", None))


class StrictIntegerField(serializers.IntegerField):
    """An integer within PostgreSQL's integer unless bounds say otherwise (ids: max_value=INT64_MAX)."""

    default_error_messages = {"invalid": "Must be an integer."}

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", INT32_MIN)
        kwargs.setdefault("max_value", INT32_MAX)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if _from_form(self) and isinstance(data, str) and _DIGITS.fullmatch(data):
            return int(data)
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return data


class StrictNumberField(serializers.FloatField):
    """A finite JSON number (an integer is a number too); DRF's FloatField also takes "1.5" and "nan"."""

    default_error_messages = {"invalid": "Must be a number."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        try:
            value = float(data)
        except OverflowError:
            self.fail("invalid")
        if not math.isfinite(value):
            self.fail("invalid")
        return value


class StrictCharField(serializers.CharField):
    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """true or false; in form input also "true"/"false" (DRF takes "yes", 1, "on" and more)."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        if _from_form(self) and data in ("true", "false"):
            return data == "true"
        self.fail("invalid")


class StrictJSONField(serializers.JSONField):
    """Any storable JSON (see jsonsafe). In form input the field's text is parsed with the same
    limits; ``null`` there is refused like a JSON null unless allow_null."""

    def to_internal_value(self, data):
        name = self.field_name or "value"
        try:
            if getattr(data, "is_json_string", False):
                data = jsonsafe.loads(str(data), name)
                if data is None and not self.allow_null:
                    self.fail("null")
            else:
                jsonsafe.check(data, name)
        except jsonsafe.JSONRefused as exc:
            raise serializers.ValidationError(exc.message if exc.path == name else str(exc)) from None
        except ValueError:
            self.fail("invalid")
        return data


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
