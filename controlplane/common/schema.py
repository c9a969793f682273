"""OpenAPI schema pieces shared by every API app: the bearer scheme and the error responses.

drf-spectacular declares only the success response of each operation. Clients generated from
the schema need the errors too, in the one shape ``controlplane.common.api`` produces.
"""
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "detail": {"type": "string"},
        "fields": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "description": "Messages per input field, such as spec.instance_group[0].count.",
        },
    },
    "required": ["detail"],
}

_ERRORS = {
    "400": "Bad input; `fields` names each field.",
    "401": "No credentials, or a revoked, expired or unknown token.",
    "403": "The role or the token's scope does not allow this.",
    "404": "No such object, or it belongs to another team.",
    "409": "Conflicts with the current state.",
    "413": "The request body or upload is too large.",
    "415": "Unsupported content type.",
}
_UNSAFE = {"post", "put", "patch", "delete"}


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "controlplane.accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Bearer")


def _error_codes(method: str, operation: dict) -> list[str]:
    # 404 everywhere: a path object, an object named in the body or query, a page past the end.
    codes = ["401", "403", "404"]
    has_body = "requestBody" in operation
    if operation.get("parameters") or has_body:
        codes.append("400")
    if method in _UNSAFE:
        codes.append("409")
    if has_body:
        codes += ["413", "415"]
    return codes


def declare_error_responses(result, generator, request, public):
    """POSTPROCESSING_HOOKS entry: add the error responses an operation can give."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path in result.get("paths", {}).values():
        for method, operation in path.items():
            responses = operation.setdefault("responses", {})
            for code in _error_codes(method, operation):
                responses.setdefault(code, {"description": _ERRORS[code], "content": {"application/json": {"schema": ref}}})
    return result
