"""deployments.spec.parse_spec: defaults, each strategy's steps, strict types, and errors keyed by
the API's field names (`steps[1].percent`, `gates.max_error_ratio`), every bad field at once."""
import copy
import math
from datetime import datetime, timedelta, timezone

import pytest
from django.core.exceptions import ValidationError

from controlplane.deployments.spec import MAX_STEPS, CustomGate, Gates, Spec, Step, parse_spec

BASE = {"endpoint": "vision.fraud-scorer", "version": 3}


def body(**extra):
    return {**copy.deepcopy(BASE), **extra}


def errors_of(data) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as exc:
        parse_spec(data)
    return exc.value.message_dict


def set_field(path: str, value) -> dict:
    """A valid body with the field at ``path`` (as the errors name it) set to ``value``."""
    if path.startswith("steps[0]."):
        return body(strategy="steps", steps=[{"percent": 10, "bake_s": 60, path.split(".")[1]: value}])
    if path.startswith("gates.custom[0]."):
        gate = {"name": "gpu_memory", "query": "max(nv_gpu_memory_used_bytes{model={{model}}})", "max": 1e9}
        return body(gates={"custom": [{**gate, path.split(".")[-1]: value}]})
    if path == "gates.max_error_ratio":  # with another gate, so that a bad value is its only error
        return body(gates={"max_error_ratio": value, "max_p99_ms": 300})
    if path.startswith("gates."):
        return body(gates={path.split(".", 1)[1]: value})
    if path == "servers":
        return body(placement="new_servers", servers=value)
    return body(**{path: value})


# -- defaults --------------------------------------------------------------------------------------


def test_the_smallest_body_takes_every_default():
    spec = parse_spec(body())
    assert spec == Spec(
        endpoint="vision.fraud-scorer", version=3, label="", strategy="canary", steps=(Step(10, 60),),
        placement="same_servers", servers=(), gates=Gates(), approval_required=False, deadline_s=None,
        rollback_window_s=600, start_at=None, reason="",
    )
    assert spec.defaults_used == ("canary_percent", "step_percent", "bake_s")
    assert spec.gates == Gates(max_error_ratio=0.05, max_p99_ms=None, max_p99_ratio=None, custom=(), min_requests=50,
                               interval_s=10, window_s=60, failures_to_breach=2, guard=True)


def test_defaults_used_names_only_the_defaults_left_out():
    assert parse_spec(body(bake_s=30)).defaults_used == ("canary_percent", "step_percent")
    assert parse_spec(body(canary_percent=5, step_percent=20, bake_s=0)).defaults_used == ()


def test_defaults_used_does_not_take_part_in_equality():
    assert parse_spec(body()) == parse_spec(body(canary_percent=10, step_percent=25, bake_s=60))


def test_the_reason_is_stripped():
    assert parse_spec(body(reason="  fixes the fraud threshold \n")).reason == "fixes the fraud threshold"
    assert parse_spec(body(reason="   ")).reason == ""


def test_a_body_that_is_not_an_object_is_refused():
    for data in (None, [], "canary", 3, [BASE]):
        assert errors_of(data) == {"non_field_errors": ["Send a JSON object."]}


# -- version XOR label -----------------------------------------------------------------------------


def test_green_by_label():
    spec = parse_spec({"endpoint": "vision.fraud-scorer", "label": "canary"})
    assert (spec.version, spec.label) == (None, "canary")


def test_version_or_label_not_both_and_not_neither():
    assert list(errors_of({"endpoint": "e"})) == ["version"]
    assert list(errors_of(body(label="canary"))) == ["version"]
    assert list(errors_of({"endpoint": "e", "version": None, "label": None})) == ["version"]
    assert parse_spec(body(label=None)).version == 3
    assert parse_spec({"endpoint": "e", "version": None, "label": "prod"}).label == "prod"


@pytest.mark.parametrize("version", [0, -1, True, False, "3", 3.0, 2.5, [3], {"v": 3}])
def test_a_bad_version_is_named_once(version):
    assert errors_of(body(version=version)) == {"version": ["Give a version number, such as 3."]}


@pytest.mark.parametrize("label", ["", "x" * 32, 5, True, ["canary"]])
def test_a_bad_label_is_named(label):
    assert list(errors_of({"endpoint": "e", "label": label})) == ["label"]


def test_the_longest_label_and_endpoint():
    spec = parse_spec({"endpoint": "e" * 127, "label": "l" * 31})
    assert (len(spec.endpoint), len(spec.label)) == (127, 31)


@pytest.mark.parametrize("endpoint", [None, "", "e" * 128, 5, ["vision.fraud-scorer"], True])
def test_a_bad_endpoint_is_named(endpoint):
    data = body(endpoint=endpoint) if endpoint is not None else {"version": 3}
    assert list(errors_of(data)) == ["endpoint"]


# -- strategies and their steps --------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "steps"), [
    ({}, [(10, 60)]),
    ({"strategy": "canary"}, [(10, 60)]),
    ({"strategy": "canary", "canary_percent": 30, "bake_s": 120}, [(30, 120)]),
    ({"strategy": "canary", "canary_percent": 1}, [(1, 60)]),
    ({"strategy": "canary", "canary_percent": 99}, [(99, 60)]),
    ({"strategy": "linear"}, [(25, 60), (50, 60), (75, 60)]),
    ({"strategy": "linear", "step_percent": 25, "bake_s": 5}, [(25, 5), (50, 5), (75, 5)]),
    ({"strategy": "linear", "step_percent": 30}, [(30, 60), (60, 60), (90, 60)]),
    ({"strategy": "linear", "step_percent": 50}, [(50, 60)]),
    ({"strategy": "linear", "step_percent": 99}, [(99, 60)]),
    ({"strategy": "linear", "step_percent": 34, "bake_s": 0}, [(34, 0), (68, 0)]),
    ({"strategy": "all_at_once"}, [(100, 60)]),
    ({"strategy": "all_at_once", "bake_s": 0}, [(100, 0)]),
    ({"strategy": "steps", "steps": [{"percent": 5, "bake_s": 30}, {"percent": 50, "bake_s": 300}]},
     [(5, 30), (50, 300)]),
    ({"strategy": "steps", "steps": [{"percent": 50}, {"percent": 100, "bake_s": 10}]}, [(50, 0), (100, 10)]),
    ({"strategy": "steps", "steps": [{"percent": 100, "bake_s": 0}]}, [(100, 0)]),
])
def test_each_strategy_makes_its_steps(extra, steps):
    spec = parse_spec(body(**extra))
    assert [(s.percent, s.bake_s) for s in spec.steps] == steps
    assert spec.strategy == extra.get("strategy", "canary")


def test_linear_steps_never_reach_100_promotion_follows():
    for step in range(5, 100):
        percents = [s.percent for s in parse_spec(body(strategy="linear", step_percent=step)).steps]
        assert percents == list(range(step, 100, step))
        assert percents[-1] < 100 and len(percents) <= MAX_STEPS


def test_linear_with_more_than_20_steps_is_refused():
    assert len(parse_spec(body(strategy="linear", step_percent=5)).steps) == 19
    for step in (1, 2, 3, 4):
        assert errors_of(body(strategy="linear", step_percent=step)) == {
            "step_percent": ["At most 20 steps: use a step of at least 5%."]}
    # The canary ignores step_percent, so a small one is no error there.
    assert parse_spec(body(step_percent=1)).steps == (Step(10, 60),)


@pytest.mark.parametrize("strategy", ["blue_green", "Canary", "", None, 5, ["canary"], {"canary": 1}])
def test_an_unknown_strategy_is_named(strategy):
    assert list(errors_of(body(strategy=strategy))) == ["strategy"]


@pytest.mark.parametrize("strategy", ["canary", "linear", "all_at_once"])
def test_steps_belong_to_strategy_steps_only(strategy):
    assert list(errors_of(body(strategy=strategy, steps=[{"percent": 10}]))) == ["steps"]


def test_explicit_steps_must_grow():
    e = errors_of(body(strategy="steps", steps=[{"percent": 10}, {"percent": 10}]))
    assert e == {"steps[1].percent": ["Steps must grow: 10 is not above 10."]}
    e = errors_of(body(strategy="steps", steps=[{"percent": 10}, {"percent": 50}, {"percent": 20}]))
    assert e == {"steps[2].percent": ["Steps must grow: 20 is not above 50."]}


def test_at_most_20_explicit_steps():
    twenty = [{"percent": p, "bake_s": 1} for p in range(5, 101, 5)]
    assert len(parse_spec(body(strategy="steps", steps=twenty)).steps) == 20
    twenty_one = [{"percent": p} for p in range(1, 22)]
    assert errors_of(body(strategy="steps", steps=twenty_one)) == {"steps": ["At most 20 steps."]}


@pytest.mark.parametrize("steps", [None, [], {}, "10,50", 10, [[10, 60]]])
def test_steps_must_be_a_non_empty_list_of_objects(steps):
    data = body(strategy="steps", steps=steps) if steps is not None else body(strategy="steps")
    e = errors_of(data)
    assert list(e) == (["steps[0]"] if steps == [[10, 60]] else ["steps"])


def test_an_unknown_key_in_a_step_is_named():
    e = errors_of(body(strategy="steps", steps=[{"percent": 10}, {"percent": 50, "bake": 60}]))
    assert e == {"steps[1]": ["Unknown field 'bake'; a step has percent and bake_s."]}


def test_a_step_without_percent_is_named():
    e = errors_of(body(strategy="steps", steps=[{"percent": 10}, {"bake_s": 60}]))
    assert list(e) == ["steps[1].percent"]


def test_every_bad_step_is_named_at_once():
    e = errors_of(body(strategy="steps", steps=[{"percent": 0}, "x", {"percent": 10, "bake_s": -1},
                                                 {"percent": 50, "extra": 1}, {"percent": 101}]))
    assert set(e) == {"steps[0].percent", "steps[1]", "steps[2].bake_s", "steps[3]", "steps[4].percent"}


# -- strict types and ranges -----------------------------------------------------------------------

INT_FIELDS = {  # name: (lowest, highest)
    "canary_percent": (1, 99),
    "step_percent": (1, 99),
    "bake_s": (0, 7 * 24 * 3600),
    "deadline_s": (60, 30 * 24 * 3600),
    "rollback_window_s": (0, 30 * 24 * 3600),
    "gates.min_requests": (1, 10_000_000),
    "gates.interval_s": (1, 3600),
    "gates.window_s": (5, 7 * 24 * 3600),
    "gates.failures_to_breach": (1, 100),
    "steps[0].percent": (1, 100),
    "steps[0].bake_s": (0, 7 * 24 * 3600),
}
NOT_INTS = [True, False, "5", "60", 1.5, 5.0, 60.0, math.nan, math.inf, [5], {"n": 5}]


@pytest.mark.parametrize("field", list(INT_FIELDS))
def test_integers_are_strict(field):
    for value in NOT_INTS:
        assert list(errors_of(set_field(field, value))) == [field], (field, value)


@pytest.mark.parametrize("field", list(INT_FIELDS))
def test_integer_ranges_include_both_ends(field):
    lo, hi = INT_FIELDS[field]
    for value in (lo, hi):
        parse_spec(set_field(field, value))
    for value in (lo - 1, hi + 1, -(10 ** 30), 10 ** 30):
        e = errors_of(set_field(field, value))
        assert e == {field: [f"Give a whole number from {lo} to {hi}."]}, value


def test_integers_land_where_they_belong():
    spec = parse_spec(body(deadline_s=3600, rollback_window_s=0, gates={
        "min_requests": 7, "interval_s": 5, "window_s": 30, "failures_to_breach": 3}))
    assert (spec.deadline_s, spec.rollback_window_s) == (3600, 0)
    g = spec.gates
    assert (g.min_requests, g.interval_s, g.window_s, g.failures_to_breach) == (7, 5, 30, 3)


NUMBER_FIELDS = {  # name: (accepted, refused)
    "gates.max_error_ratio": ([0, 0.0, 0.01, 1, 1.0], [-0.01, 1.01, 2]),
    "gates.max_p99_ms": ([0.001, 1, 250, 250.5, 3_600_000], [0, 0.0, -1, 3_600_001]),
    "gates.max_p99_ratio": ([1, 1.0, 1.2, 1000], [0.99, 0, 1000.5]),
    "gates.custom[0].max": ([-5, 0, 0.5, 1e18, -1e18], [1e19, -1e19]),
}
NOT_NUMBERS = [True, False, "0.5", "1", math.nan, math.inf, -math.inf, [0.5], {"v": 1}]


@pytest.mark.parametrize("field", list(NUMBER_FIELDS))
def test_numbers_are_strict_and_finite(field):
    for value in NOT_NUMBERS:
        assert list(errors_of(set_field(field, value))) == [field], (field, value)


@pytest.mark.parametrize("field", list(NUMBER_FIELDS))
def test_number_ranges(field):
    accepted, refused = NUMBER_FIELDS[field]
    name = field.rsplit(".", 1)[-1]
    for value in accepted:
        gates = parse_spec(set_field(field, value)).gates
        got = gates.custom[0].max if name == "max" else getattr(gates, name)
        assert got == value and type(got) is float
    for value in refused:
        assert list(errors_of(set_field(field, value))) == [field], value


@pytest.mark.parametrize("field", ["approval_required", "gates.guard"])
def test_booleans_are_strict(field):
    for value in (1, 0, "true", "false", None, [True]):
        assert errors_of(set_field(field, value)) == {field: ["Give true or false."]}, value
    assert parse_spec(set_field(field, False)) is not None


def test_booleans_land_where_they_belong():
    spec = parse_spec(body(approval_required=True, gates={"guard": False}))
    assert spec.approval_required is True and spec.gates.guard is False


@pytest.mark.parametrize("reason", [None, 5, ["why"], "x" * 2001])
def test_a_bad_reason_is_named(reason):
    assert list(errors_of(body(reason=reason))) == ["reason"]


def test_the_longest_reason():
    assert len(parse_spec(body(reason="x" * 2000)).reason) == 2000


# -- placement and servers -------------------------------------------------------------------------


def test_same_servers_is_the_default_and_takes_no_servers():
    assert parse_spec(body()).placement == "same_servers"
    assert parse_spec(body(servers=[])).servers == ()
    assert errors_of(body(servers=["gpu-a"])) == {
        "servers": ["same_servers loads green beside blue on blue's servers; leave servers out."]}
    assert list(errors_of(body(placement="same_servers", servers=["gpu-a"]))) == ["servers"]


def test_new_servers_needs_servers():
    spec = parse_spec(body(placement="new_servers", servers=["gpu-b", "gpu-a"]))
    assert (spec.placement, spec.servers) == ("new_servers", ("gpu-b", "gpu-a"))
    assert errors_of(body(placement="new_servers")) == {"servers": ["new_servers needs the servers green goes on."]}
    assert list(errors_of(body(placement="new_servers", servers=[]))) == ["servers"]


@pytest.mark.parametrize("servers", [
    "gpu-a", ["gpu-a", 5], [""], ["s" * 64], [None], [["gpu-a"]], {"gpu-a": 1}, ["gpu-a", "gpu-a"],
    [f"gpu-{i}" for i in range(1001)],
])
def test_bad_servers_are_named(servers):
    assert list(errors_of(body(placement="new_servers", servers=servers))) == ["servers"]


def test_the_most_and_the_longest_servers():
    names = [f"gpu-{i}" for i in range(1000)]
    assert len(parse_spec(body(placement="new_servers", servers=names)).servers) == 1000
    assert parse_spec(body(placement="new_servers", servers=["s" * 63])).servers == ("s" * 63,)


def test_a_server_listed_twice():
    assert errors_of(body(placement="new_servers", servers=["a", "b", "a"])) == {
        "servers": ["A server is listed twice."]}


@pytest.mark.parametrize("placement", ["new-servers", "elsewhere", "", None, 5, ["new_servers"]])
def test_an_unknown_placement_is_named(placement):
    assert list(errors_of(body(placement=placement))) == ["placement"]


# -- start_at --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "utc"), [
    ("2026-12-01T18:00:00Z", datetime(2026, 12, 1, 18, 0, tzinfo=timezone.utc)),
    ("2026-12-01T18:00:00+00:00", datetime(2026, 12, 1, 18, 0, tzinfo=timezone.utc)),
    ("2026-12-01T18:00:00+01:00", datetime(2026, 12, 1, 17, 0, tzinfo=timezone.utc)),
    ("2026-12-01T18:00:00-05:30", datetime(2026, 12, 1, 23, 30, tzinfo=timezone.utc)),
    ("2026-12-01T00:30:00+02:00", datetime(2026, 11, 30, 22, 30, tzinfo=timezone.utc)),
    ("2026-12-01T18:00:00.250Z", datetime(2026, 12, 1, 18, 0, 0, 250_000, tzinfo=timezone.utc)),
    ("2026-12-01 18:00Z", datetime(2026, 12, 1, 18, 0, tzinfo=timezone.utc)),
])
def test_start_at_with_a_zone_is_read_in_utc(text, utc):
    start = parse_spec(body(start_at=text)).start_at
    assert start == utc and start.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["2026-12-01T18:00:00", "2026-12-01", "2026-12-01 18:00"])
def test_start_at_without_a_zone_is_refused(text):
    assert errors_of(body(start_at=text)) == {"start_at": ["Give the time zone too, such as Z or +01:00."]}


@pytest.mark.parametrize("value", ["tomorrow", "", "2026-13-01T00:00:00Z", "2026-12-01T25:00:00Z", "18:00Z",
                                   "2026-12-01T18:00:00+25:00", 1_790_000_000, 1.5, True, ["2026-12-01T18:00:00Z"]])
def test_start_at_garbage_is_refused(value):
    assert errors_of(body(start_at=value)) == {
        "start_at": ["Give an ISO 8601 time with its zone, such as 2026-12-01T18:00:00Z."]}


def test_start_at_null_starts_now():
    assert parse_spec(body(start_at=None)).start_at is None


# -- gates -----------------------------------------------------------------------------------------


def test_gates_null_or_empty_take_the_defaults():
    assert parse_spec(body(gates=None)).gates == Gates()
    assert parse_spec(body(gates={})).gates == Gates()


@pytest.mark.parametrize("gates", [[], "max_error_ratio", 0.05, True])
def test_gates_must_be_an_object(gates):
    assert list(errors_of(body(gates=gates))) == ["gates"]


def test_every_gate_kind_together():
    spec = parse_spec(body(gates={
        "max_error_ratio": 0.01, "max_p99_ms": 250, "max_p99_ratio": 1.5, "min_requests": 100, "interval_s": 15,
        "window_s": 120, "failures_to_breach": 3, "guard": False,
        "custom": [{"name": "gpu-mem_1", "query": "max(nv_gpu_memory_used_bytes{model={{model}}})", "max": 7e9}],
    }))
    assert spec.gates == Gates(max_error_ratio=0.01, max_p99_ms=250.0, max_p99_ratio=1.5,
                               custom=(CustomGate("gpu-mem_1", "max(nv_gpu_memory_used_bytes{model={{model}}})", 7e9),),
                               min_requests=100, interval_s=15, window_s=120, failures_to_breach=3, guard=False)


def test_an_unknown_gate_field_is_named_with_its_path():
    e = errors_of(body(gates={"max_error_rate": 0.01}))
    assert list(e) == ["gates.max_error_rate"]
    assert "max_error_ratio" in e["gates.max_error_rate"][0]


def test_the_error_ratio_gate_can_be_turned_off_when_another_gate_remains():
    assert parse_spec(body(gates={"max_error_ratio": None, "max_p99_ms": 300})).gates.max_error_ratio is None
    custom = {"name": "q", "query": "up{endpoint={{endpoint}}}", "max": 1}
    assert parse_spec(body(gates={"max_error_ratio": None, "custom": [custom]})).gates.custom[0].name == "q"


def test_a_bad_error_ratio_alone_is_named_once():
    assert list(errors_of(body(gates={"max_error_ratio": 2}))) == ["gates.max_error_ratio"]


def test_at_least_one_gate():
    for gates in ({"max_error_ratio": None}, {"max_error_ratio": None, "max_p99_ms": None, "max_p99_ratio": None},
                  {"max_error_ratio": None, "custom": []}):
        assert errors_of(body(gates=gates)) == {"gates": [
            "Give at least one gate: max_error_ratio, max_p99_ms, max_p99_ratio or a custom one."]}


def _custom(name="gpu_memory", query="max(nv_gpu_memory_used_bytes{model={{model}}})", limit=1e9):
    return {"name": name, "query": query, "max": limit}


def test_up_to_five_custom_gates():
    five = [_custom(f"g{i}") for i in range(5)]
    assert [c.name for c in parse_spec(body(gates={"custom": five})).gates.custom] == ["g0", "g1", "g2", "g3", "g4"]
    six = [_custom(f"g{i}") for i in range(6)]
    assert list(errors_of(body(gates={"custom": six}))) == ["gates.custom"]


@pytest.mark.parametrize("custom", ["up", {"name": "x"}, _custom(), None])
def test_custom_gates_are_a_list(custom):
    assert list(errors_of(body(gates={"custom": custom}))) == ["gates.custom"]


@pytest.mark.parametrize("item", [
    "gpu_memory", ["gpu_memory", "up", 1], {"name": "a", "query": "up{endpoint={{endpoint}}}"}, {"name": "a", "max": 1},
    {**_custom(), "min": 0}, {},
])
def test_a_custom_gate_has_exactly_name_query_and_max(item):
    assert errors_of(body(gates={"custom": [_custom("ok"), item]})) == {
        "gates.custom[1]": ["A custom gate is an object with exactly name, query and max."]}


@pytest.mark.parametrize("name", ["", "a b", "a.b", "a/b", "x" * 61, 5, None, "_", "--", "a{b}", "ä;"])
def test_a_custom_gate_name_is_short_letters_digits_dash_underscore(name):
    assert list(errors_of(body(gates={"custom": [_custom(name)]}))) == ["gates.custom[0].name"]


@pytest.mark.parametrize("name", ["a", "p99", "gpu-memory_2", "x" * 60, "A_B-c"])
def test_good_custom_gate_names(name):
    assert parse_spec(body(gates={"custom": [_custom(name)]})).gates.custom[0].name == name


@pytest.mark.parametrize("query", ["", "   ", "x" * 2001, "up\x00", 5, None, ["up"]])
def test_a_custom_gate_query_is_a_bounded_text(query):
    assert list(errors_of(body(gates={"custom": [_custom(query=query)]}))) == ["gates.custom[0].query"]


def test_custom_gate_names_are_unique():
    e = errors_of(body(gates={"custom": [_custom("a"), _custom("b"), _custom("a")]}))
    assert e == {"gates.custom": ["Two custom gates have the same name."]}


def test_a_custom_gate_keeps_its_query_verbatim_and_its_max_as_a_float():
    query = 'sum(rate(x{endpoint={{endpoint}},variant={{variant}}}[{{window}}]))'
    gate = parse_spec(body(gates={"custom": [_custom("rate", query, 3)]})).gates.custom[0]
    assert gate == CustomGate("rate", query, 3.0) and type(gate.max) is float
    longest = "x{model={{model}}}".ljust(2000)
    assert parse_spec(body(gates={"custom": [_custom(query=longest)]})).gates.custom[0].query == longest


@pytest.mark.parametrize("query, loose", [
    ("up", "up"),
    ('x{endpoint="speech.asr"}', 'x{endpoint="speech.asr"}'),  # another team's endpoint, by hand
    ("x{endpoint={{endpoint}}} / y{variant={{variant}}}", 'y{variant="green"}'),
    ("x{endpoint=~{{endpoint}}}", "x{endpoint=~{{endpoint}}}"),  # a regex can match more than ours
    ("x{endpoint={{endpoint}} or endpoint=\"speech.asr\"}", None),  # Prometheus 3's or between matchers
    ("sum by (le) (x{model={{model}}}) or on() vector(0) + nv_gpu_memory_used_bytes", "nv_gpu_memory_used_bytes"),
])
def test_a_custom_gate_must_pin_every_selector_to_its_endpoint_or_model(query, loose):
    errors = errors_of(body(gates={"custom": [_custom(query=query)]}))
    [message] = errors["gates.custom[0].query"]
    assert message.startswith("A custom gate reads only this deployment's series: pin every selector with "
                              "endpoint={{endpoint}} or model={{model}}")
    if loose:
        assert f"(not pinned: {loose})" in message


@pytest.mark.parametrize("query", ['x{endpoint={{endpoint}}', 'x{endpoint={{endpoint}}} + "open'])
def test_a_custom_gate_query_that_cannot_be_read_is_refused(query):
    assert errors_of(body(gates={"custom": [_custom(query=query)]}))["gates.custom[0].query"][0].startswith(
        "Cannot read this PromQL: a")


def test_gates_round_trip_through_a_dict():
    gates = parse_spec(body(gates={"max_p99_ratio": 1.3, "custom": [_custom("a"), _custom("b", "up{endpoint={{endpoint}}}", -1)]})).gates
    data = gates.as_dict()
    assert data["custom"] == [{"name": "a", "query": "max(nv_gpu_memory_used_bytes{model={{model}}})", "max": 1e9},
                              {"name": "b", "query": "up{endpoint={{endpoint}}}", "max": -1.0}]
    assert Gates.from_dict(data) == gates
    assert Gates.from_dict(Gates().as_dict()) == Gates()
    assert Step(10, 60).as_dict() == {"percent": 10, "bake_s": 60}


# -- unknown fields and several errors at once -----------------------------------------------------


def test_every_unknown_top_level_field_is_named():
    e = errors_of(body(strategy_name="canary", bake=60, Version=3))
    assert e == {"Version": ["Unknown field."], "bake": ["Unknown field."], "strategy_name": ["Unknown field."]}


def test_every_bad_field_is_named_in_one_call():
    e = errors_of({
        "endpoint": "", "version": "3", "strategy": "linear", "step_percent": 0, "bake_s": -1, "placement": "x",
        "servers": "gpu-a", "approval_required": "yes", "deadline_s": 10, "rollback_window_s": 1.5,
        "start_at": "2026-12-01T18:00:00", "reason": 7, "colour": "blue",
        "gates": {"max_error_ratio": 2, "max_p99_ms": 0, "max_p99_ratio": 0.5, "min_requests": 0, "interval_s": 0,
                  "window_s": 1, "failures_to_breach": 0, "guard": "on", "custom": [_custom(name="a b")]},
    })
    assert set(e) == {
        "endpoint", "version", "step_percent", "bake_s", "placement", "servers", "approval_required", "deadline_s",
        "rollback_window_s", "start_at", "reason", "colour", "gates.max_error_ratio", "gates.max_p99_ms",
        "gates.max_p99_ratio", "gates.min_requests", "gates.interval_s", "gates.window_s",
        "gates.failures_to_breach", "gates.guard", "gates.custom[0].name",
    }
    assert all(len(messages) == 1 for messages in e.values())


def test_steps_and_gates_errors_together():
    e = errors_of(body(strategy="steps", steps=[{"percent": 50}, {"percent": 40}],
                       gates={"custom": [_custom("a"), _custom("a")], "window_s": 4}))
    assert set(e) == {"steps[1].percent", "gates.custom", "gates.window_s"}


# -- null where a default applies ------------------------------------------------------------------
# JSON null for a field that has a default should either be refused (naming the field) or mean the
# default; it must never quietly mean something else.

_P99 = {"max_p99_ms": 400}
_GATE = {"name": "gpu_memory", "query": "up{endpoint={{endpoint}}}", "max": 1}


def _null_case(field, with_null, left_out, what_happens=None):
    return pytest.param(field, with_null, left_out, id=field)


NULLABLE = [
    _null_case("canary_percent", body(canary_percent=None), body()),
    _null_case("step_percent", body(strategy="linear", step_percent=None), body(strategy="linear")),
    _null_case("deadline_s", body(deadline_s=None), body()),
    _null_case("start_at", body(start_at=None), body()),
    _null_case("gates.max_p99_ms", body(gates={"max_p99_ms": None}), body(gates={})),
    _null_case("gates.max_p99_ratio", body(gates={"max_p99_ratio": None}), body(gates={})),
    _null_case("bake_s", body(bake_s=None), body(), "no bake at all (0 s), not the default 60 s"),
    _null_case("rollback_window_s", body(rollback_window_s=None), body(),
               "Spec.rollback_window_s is None (an int, NOT NULL in the table)"),
    *[_null_case(f"gates.{k}", body(gates={**_P99, k: None}), body(gates=_P99),
                 "every other gate setting is replaced by the defaults (the p99 gate is lost)")
      for k in ("min_requests", "interval_s", "window_s", "failures_to_breach")],
    _null_case("steps[0].percent", body(strategy="steps", steps=[{"percent": None}]),
               body(strategy="steps", steps=[{}]), "the step is dropped: a steps rollout with no steps"),
    _null_case("steps[0].bake_s", body(strategy="steps", steps=[{"percent": 10, "bake_s": None}, {"percent": 50}]),
               body(strategy="steps", steps=[{"percent": 10}, {"percent": 50}]), "the step is dropped"),
    _null_case("gates.custom[0].max", body(gates={"custom": [{**_GATE, "max": None}]}),
               body(gates={"custom": [{k: v for k, v in _GATE.items() if k != "max"}]}), "the custom gate is dropped"),
]


@pytest.mark.parametrize(("field", "with_null", "left_out"), NULLABLE)
def test_null_is_refused_or_means_the_default(field, with_null, left_out):
    try:
        spec = parse_spec(with_null)
    except ValidationError as exc:
        assert field in exc.message_dict
        return
    try:
        default = parse_spec(left_out)
    except ValidationError as exc:
        pytest.fail(f"null gave {spec}, but leaving it out gives {exc.message_dict}")
    assert spec == default


def test_unknown_gate_fields_are_each_named():
    e = errors_of(body(gates={"max_error_rate": 0.01, "p99": 200}))
    assert {"gates.max_error_rate", "gates.p99"} <= set(e)
