from urllib.parse import urlencode

from django import template
from django.urls import reverse

register = template.Library()


@register.filter
def audit_log_url(obj) -> str:
    """The Audit page filtered to one object: ``{{ model|audit_log_url }}``."""
    return f"{reverse('audit')}?{urlencode({'object_type': obj._meta.label_lower, 'object_id': obj.pk})}"


@register.filter
def audit_object_type(obj) -> str:
    """How events name the object's type, such as registry.model."""
    return obj._meta.label_lower
