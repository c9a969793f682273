"""GET /api/v1/metrics/series/: one chart's data, for the UI's charts and for scripts."""
from django.core.validators import RegexValidator
from django.http import QueryDict
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.common.api import StrictCharField, StrictChoiceField, StrictSerializer
from controlplane.metrics import charts, queries


class SeriesQuerySerializer(StrictSerializer):
    series = StrictChoiceField(choices=list(queries.CHART_SERIES), help_text="What to chart.")
    scope = StrictCharField(
        max_length=26, validators=[RegexValidator(r"^(fleet|(endpoint|model|server):[1-9][0-9]{0,18})$")],
        help_text="fleet, endpoint:<id>, model:<id> or server:<id>; objects of other teams answer 404.")
    range = StrictChoiceField(choices=list(charts.RANGES), default="1h", help_text="How far back from now.")


class LineSerializer(serializers.Serializer):
    label = serializers.CharField(help_text='The legend, such as "canary v3".')
    labels = serializers.DictField(child=serializers.CharField(), help_text="The labels that tell this line apart.")
    points = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True), min_length=2, max_length=2),
        help_text="[time in seconds, value or null]: one a step, null where Prometheus has no value (not zero).")


class MarkerSerializer(serializers.Serializer):
    t = serializers.IntegerField(help_text="Time in seconds.")
    text = serializers.CharField()


class SeriesSerializer(serializers.Serializer):
    series = serializers.CharField()
    scope = serializers.CharField()
    range = serializers.CharField()
    step = serializers.IntegerField(help_text="Seconds between points (at most 1,000 points a line).")
    start = serializers.IntegerField(help_text="First point's time, seconds since the epoch; a multiple of step.")
    end = serializers.IntegerField(help_text="Last point's time.")
    unit = serializers.CharField(help_text='"req/s", "ratio" (0..1), "s", "inferences/s", "bytes" or "" (a count).', allow_blank=True)
    status = serializers.ChoiceField(choices=list(charts.STATUSES),
                                     help_text="ok; no_data (nothing in the range); not_configured (no Prometheus); "
                                               "unavailable (Prometheus down or refusing: see message).")
    message = serializers.CharField(allow_blank=True)
    lines = LineSerializer(many=True)
    markers = MarkerSerializer(many=True, help_text="Annotations (time and text) to draw on the chart.")


class SeriesView(APIView):
    """A chart's data: one series over a range, for the fleet, an endpoint, a model or a server.

    Answers 200 whether or not Prometheus answers; `status` and `message` say why a chart has
    nothing to draw. Team users see their teams' series only.
    """

    @extend_schema(parameters=[SeriesQuerySerializer], responses=SeriesSerializer, operation_id="metrics_series")
    def get(self, request):
        params: QueryDict = request.query_params
        repeated = sorted(name for name in params if len(params.getlist(name)) > 1)
        if repeated:
            raise exceptions.ValidationError({name: ["Give this parameter once."] for name in repeated})
        blank = sorted(name for name in params if params[name] == "" and name in SeriesQuerySerializer().fields)
        if blank:  # DRF would read an empty optional parameter as absent and use its default
            raise exceptions.ValidationError({name: ["Give a value."] for name in blank})
        query = SeriesQuerySerializer(data=params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        chart = charts.chart_series(request.user, series=data["series"], scope=data["scope"], range_key=data["range"])
        return Response(SeriesSerializer(chart).data)
