"""Typed environment reader for settings.

Every variable name read goes into ``Env.names`` so tests can check that
docker-compose.yml only sets variables the settings actually read.
Bad values fail loudly at start-up instead of being guessed at.
"""
import environ
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Env(environ.Env):
    names: set[str] = set()

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        Env.names.add(var)
        return super().get_value(var, cast=cast, default=default, parse_default=parse_default)

    def strict_bool(self, var: str, default: bool) -> bool:
        raw = str(self.get_value(var, default=str(default))).strip().lower()
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        raise ImproperlyConfigured(f"{var}={raw!r} is not a boolean (use true or false)")

    def positive_int(self, var: str, default: int) -> int:
        raw = self.get_value(var, default=str(default))
        try:
            value = int(raw)
        except ValueError:
            raise ImproperlyConfigured(f"{var}={raw!r} is not an integer") from None
        if value < 1:
            raise ImproperlyConfigured(f"{var}={value} must be at least 1")
        return value

    def positive_float(self, var: str, default: float) -> float:
        raw = self.get_value(var, default=str(default))
        try:
            value = float(raw)
        except ValueError:
            raise ImproperlyConfigured(f"{var}={raw!r} is not a number") from None
        if value <= 0:
            raise ImproperlyConfigured(f"{var}={value} must be above 0")
        return value
