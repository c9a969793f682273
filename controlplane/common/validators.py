import re

from django.core.exceptions import ValidationError

DNS_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def validate_dns_name(value: str) -> None:
    """A DNS label: lowercase letters, digits and hyphens, 1-63 characters, no leading or trailing hyphen."""
    if not isinstance(value, str) or not DNS_NAME_RE.match(value):
        raise ValidationError(
            "Use 1-63 lowercase letters, digits or hyphens, starting and ending with a letter or digit.",
            code="invalid_name",
        )
