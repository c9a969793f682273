"""gateway.table: the routing-table contract is strict, and names its Redis channel per database."""
import copy

import pytest

from gateway.table import FORMAT, Guard, TableError, parse_table, redis_channel

VALID = {
    "format": FORMAT, "version": 7, "generated_at": 1764600000.5,
    "servers": [{"id": 3, "name": "triton-a", "url": "http://10.0.0.3:8000", "healthy": True},
                {"id": 4, "name": "triton-b", "url": "https://triton-b.internal/prefix", "healthy": False}],
    "tokens": [{"team": "vision", "sha256": "a" * 64, "scopes": ["infer", "deploy"], "expires_at": None}],
    "endpoints": [{
        "name": "vision.fraud-scorer", "team": "vision", "access": "token", "sticky": {"header": "X-User-Id"},
        "labels": {"stable": 2, "canary": 3},
        "variants": [{"name": "canary", "version": 3, "weight": 5, "model": "vision.fraud-scorer", "servers": [3],
                      "guard": {"max_error_ratio": 0.05, "min_requests": 20, "window_s": 10}},
                     {"name": "stable", "version": 2, "weight": 95, "model": "vision.fraud-scorer", "servers": [3, 4],
                      "guard": None}],
        "shadow": {"variant": {"name": "shadow-v4", "version": 4, "weight": 0, "model": "vision.fraud-scorer",
                               "servers": [4], "guard": None}, "percent": 10, "rtol": 1e-5, "atol": 1e-6},
    }],
}


def test_a_valid_table_parses_into_lookups():
    table = parse_table(VALID)
    assert table.version == 7 and set(table.servers) == {3, 4} and not table.servers[4].healthy
    endpoint = table.endpoints["vision.fraud-scorer"]
    assert [v.name for v in endpoint.variants] == ["canary", "stable"]  # bucket order is kept
    assert endpoint.sticky_header == "X-User-Id" and endpoint.sticky_cookie is None
    assert endpoint.shadow.percent == 10.0 and endpoint.shadow.variant.servers == (4,)
    assert table.tokens["a" * 64].scopes == frozenset({"infer", "deploy"})
    assert endpoint.variants[0].guard == Guard(max_error_ratio=0.05, min_requests=20, window_s=10.0)
    assert endpoint.variants[1].guard is None and endpoint.shadow.variant.guard is None


@pytest.mark.parametrize("guard", [
    {"max_error_ratio": 0, "min_requests": 1, "window_s": 0.5},  # the bounds are inclusive where they should be
    {"max_error_ratio": 1, "min_requests": 1_000_000, "window_s": 600},
    {"max_error_ratio": 0.5, "min_requests": 10, "window_s": 600.0},
])
def test_a_guard_at_its_bounds_is_accepted(guard):
    variant = parse_table(broken(GUARD, guard)).endpoints["vision.fraud-scorer"].variants[0]
    assert variant.guard == Guard(float(guard["max_error_ratio"]), guard["min_requests"], float(guard["window_s"]))
    assert isinstance(variant.guard.max_error_ratio, float) and isinstance(variant.guard.window_s, float)


GUARD = ("endpoints", 0, "variants", 0, "guard")


def broken(path, value):
    data = copy.deepcopy(VALID)
    *parents, last = path
    target = data
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize("path, value, where", [
    (("format",), 1, "format"),  # format 1 had no guards
    (("version",), True, "version"),  # a bool is not an integer
    (("version",), -1, "version"),
    (("generated_at",), float("nan"), "generated_at"),
    (("servers", 0, "url"), "http://user:pw@10.0.0.3:8000", "servers[0].url"),
    (("servers", 0, "url"), "http://10.0.0.3:8000/?x=1", "servers[0].url"),
    (("servers", 1, "id"), 3, "servers[1].id"),  # listed twice
    (("tokens", 0, "scopes"), ["infer", "root"], "tokens[0].scopes"),
    (("tokens", 0, "sha256"), "A" * 64, "tokens[0].sha256"),
    (("endpoints", 0, "name"), "speech.fraud-scorer", "endpoints[0].name"),  # not its team's
    (("endpoints", 0, "name"), 'vision.x"} or vector(1)', "endpoints[0].name"),
    (("endpoints", 0, "access"), "anyone", "endpoints[0].access"),
    (("endpoints", 0, "sticky"), {"header": "X-User-Id", "cookie": "uid"}, "endpoints[0].sticky"),
    (("endpoints", 0, "sticky"), {"header": "X User"}, "endpoints[0].sticky.header"),
    (("endpoints", 0, "variants", 0, "servers"), [9], "endpoints[0].variants[0].servers"),  # unknown server
    (("endpoints", 0, "variants", 0, "weight"), 5.0, "endpoints[0].variants[0].weight"),
    (("endpoints", 0, "variants", 1, "name"), "canary", "endpoints[0].variants"),  # names unique
    (("endpoints", 0, "shadow", "percent"), 101, "endpoints[0].shadow.percent"),
    (("endpoints", 0, "shadow", "variant", "name"), "stable", "endpoints[0].shadow.variant.name"),
    (("endpoints", 0, "labels"), {"Stable!": 2}, "endpoints[0].labels"),
    (("endpoints", 0, "extra"), 1, "endpoints[0]"),  # no key is silently ignored
    (("endpoints", 0, "shadow"), KeyError, "endpoints[0]"),  # nor silently missing
    # the guard (format 2): required on every variant, null allowed, each field checked
    (("endpoints", 0, "variants", 1, "guard"), KeyError, "endpoints[0].variants[1]"),
    ((*GUARD, "max_error_ratio"), 1.5, "endpoints[0].variants[0].guard.max_error_ratio"),
    ((*GUARD, "max_error_ratio"), -0.1, "endpoints[0].variants[0].guard.max_error_ratio"),
    ((*GUARD, "max_error_ratio"), True, "endpoints[0].variants[0].guard.max_error_ratio"),
    ((*GUARD, "max_error_ratio"), "0.05", "endpoints[0].variants[0].guard.max_error_ratio"),
    ((*GUARD, "max_error_ratio"), float("nan"), "endpoints[0].variants[0].guard.max_error_ratio"),
    ((*GUARD, "min_requests"), 0, "endpoints[0].variants[0].guard.min_requests"),
    ((*GUARD, "min_requests"), 20.0, "endpoints[0].variants[0].guard.min_requests"),
    ((*GUARD, "min_requests"), True, "endpoints[0].variants[0].guard.min_requests"),
    ((*GUARD, "window_s"), 0, "endpoints[0].variants[0].guard.window_s"),
    ((*GUARD, "window_s"), -1, "endpoints[0].variants[0].guard.window_s"),
    ((*GUARD, "window_s"), 601, "endpoints[0].variants[0].guard.window_s"),
    ((*GUARD, "window_s"), False, "endpoints[0].variants[0].guard.window_s"),
    ((*GUARD, "window_s"), float("inf"), "endpoints[0].variants[0].guard.window_s"),
    ((*GUARD, "extra"), 1, "endpoints[0].variants[0].guard"),
    ((*GUARD, "window_s"), KeyError, "endpoints[0].variants[0].guard"),
    (GUARD, [], "endpoints[0].variants[0].guard"),
    (GUARD, {}, "endpoints[0].variants[0].guard"),
    (("endpoints", 0, "shadow", "variant", "guard"), {"max_error_ratio": 0.05, "min_requests": 20, "window_s": 10},
     "endpoints[0].shadow.variant.guard"),  # the shadow takes no weighted traffic
])
def test_a_table_that_breaks_the_contract_is_refused_with_where(path, value, where):
    with pytest.raises(TableError) as refused:
        parse_table(broken(path, value))
    assert refused.value.path == where


@pytest.mark.parametrize("url, channel", [
    ("redis://127.0.0.1:6379/15", "switchyard:routing-table@db15"),
    ("redis://redis:6379/0", "switchyard:routing-table@db0"),
    ("redis://redis:6379", "switchyard:routing-table@db0"),
    ("rediss://user:pw@redis.internal:6380/3", "switchyard:routing-table@db3"),
    ("redis://redis:6379?db=4", "switchyard:routing-table@db4"),
    ("unix:///run/redis.sock?db=2", "switchyard:routing-table@db2"),
    ("unix:///run/redis.sock", "switchyard:routing-table@db0"),
])
def test_the_channel_names_the_database_because_channels_are_server_wide(url, channel):
    assert redis_channel(url) == channel
