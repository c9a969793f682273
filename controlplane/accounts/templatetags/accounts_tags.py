from django import template

register = template.Library()


@register.filter
def token_state(token, now) -> str:
    return token.state(now)
