import re
import uuid

from django.http import HttpResponseBadRequest, JsonResponse

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Give every request an id (or keep a sane incoming X-Request-Id) and echo it back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-Id", "")
        request.request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        response = self.get_response(request)
        response["X-Request-Id"] = request.request_id
        return response


_NUL_MESSAGE = "Contains a NUL character, which cannot be stored or looked up."


class RefuseNulMiddleware:
    """Answer 400 when a NUL character is in the path, the query, a header, a cookie or a form
    body. PostgreSQL text cannot hold NUL and psycopg raises even for a query parameter, so one
    %00 would otherwise be a 500 wherever it reaches a lookup. API bodies are checked by DRF
    (our JSON parser and CharField), so that uploads reach their size limit unread; only UI form
    posts are read here, as CSRF protection reads them anyway."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        field = _nul_field(request)
        if field is None:
            return self.get_response(request)
        if request.path_info.startswith("/api/"):
            return JsonResponse({"detail": f"{field}: {_NUL_MESSAGE}", "fields": {field: [_NUL_MESSAGE]}}, status=400)
        return HttpResponseBadRequest(f"{field}: {_NUL_MESSAGE}", content_type="text/plain")


def _nul_field(request) -> str | None:
    if "\x00" in request.path_info:
        return "path"
    query = request.META.get("QUERY_STRING", "")
    if "%00" in query or "\x00" in query:  # "%2500" contains it too, and is fine
        field = next((_name(key) for key, values in request.GET.lists() if "\x00" in key + "".join(values)), None)
        if field:
            return field
    for key, value in request.META.items():
        if key.startswith("HTTP_") and "\x00" in value:
            return key[5:].replace("_", "-").title()
    if any("\x00" in key + value for key, value in request.COOKIES.items()):
        return "Cookie"
    if request.method == "POST" and not request.path_info.startswith("/api/"):
        return next((_name(key) for key, values in request.POST.lists() if "\x00" in key + "".join(values)), None)
    return None


def _name(key: str) -> str:
    return key if "\x00" not in key else "query"
