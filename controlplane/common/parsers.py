"""The API's JSON parser (DRF's DEFAULT_PARSER_CLASSES). Its own module: DRF's views import it."""
from django.conf import settings
from rest_framework import exceptions, parsers

from controlplane.common import jsonsafe


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing what would otherwise fail later as a 500: nesting deeper than
    jsonsafe.MAX_DEPTH, NUL and unpaired surrogates in any string, and numbers such as 1e400."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return jsonsafe.loads(stream.read().decode(encoding))
        except jsonsafe.JSONRefused as exc:
            raise exceptions.ValidationError({exc.path: [exc.message]}) from None
        except ValueError as exc:  # includes UnicodeDecodeError
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
