"""gateway.routing: variant choice, sticky buckets, server choice and Triton paths."""
import hashlib
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import routing
from gateway.routing import BUCKETS, ModelRequest, RouteError, bucket_of, select_variant
from gateway.table import Endpoint, Shadow, Variant


def variant(name, version, weight, servers=(1,)):
    return Variant(name=name, version=version, weight=weight, model="vision.fraud-scorer", servers=tuple(servers))


def endpoint(*variants, labels=None, shadow=None):
    return Endpoint(name="vision.fraud-scorer", team="vision", access="token", sticky_header="X-User-Id",
                    sticky_cookie=None, labels=labels if labels is not None else {"stable": 2, "canary": 3},
                    variants=tuple(variants), shadow=shadow)


CANARY = variant("canary", 3, 5)
STABLE = variant("stable", 2, 95, servers=(1, 2))
EP = endpoint(CANARY, STABLE)


def pick(ep=EP, *, version=None, sticky_key=None, explicit_variant=None, rand=0.5):
    return select_variant(ep, version=version, sticky_key=sticky_key, explicit_variant=explicit_variant, rand=rand)


# -- bucket_of -------------------------------------------------------------------------------------

def test_bucket_is_the_documented_function():
    for key in ["", "user-1", "ünïcödé", "x" * 1000]:
        expected = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % BUCKETS
        assert bucket_of(key) == expected
        assert 0 <= bucket_of(key) < BUCKETS


def test_bucket_is_stable_across_processes():
    # hash() would differ between these two interpreters (PYTHONHASHSEED is random per process).
    code = "from gateway.routing import bucket_of; print([bucket_of(k) for k in ('a', 'user-42', 'é')])"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert outs == {f"{[bucket_of(k) for k in ('a', 'user-42', 'é')]}\n"}


def test_bucket_accepts_lone_surrogates():
    assert 0 <= bucket_of("\udcff") < BUCKETS


def test_buckets_spread_evenly():
    counts = Counter(bucket_of(f"user-{i}") * 10 // BUCKETS for i in range(20_000))
    assert all(1700 < n < 2300 for n in counts.values()), counts


# -- weights ---------------------------------------------------------------------------------------

def test_weighted_choice_follows_rand():
    # canary 5, stable 95: rand in [0, 0.05) is the canary, in [0.05, 1) the stable.
    assert pick(rand=0.0) is CANARY
    assert pick(rand=0.0499) is CANARY
    assert pick(rand=0.05) is STABLE
    assert pick(rand=0.999999) is STABLE


def test_weighted_choice_near_one_never_fails():
    ep = endpoint(variant("a", 1, 1), variant("b", 1, 0), labels={})
    assert pick(ep, rand=1.0 - 2**-53).name == "a"


def test_zero_weight_variant_never_chosen_by_weight():
    ep = endpoint(variant("a", 1, 0), variant("b", 2, 3), variant("c", 3, 0), labels={})
    assert {pick(ep, rand=r / 100).name for r in range(100)} == {"b"}
    assert {pick(ep, sticky_key=f"k{i}").name for i in range(500)} == {"b"}


def test_weighted_choice_proportions():
    ep = endpoint(variant("a", 1, 1), variant("b", 2, 3), labels={})
    counts = Counter(pick(ep, rand=i / 4000).name for i in range(4000))
    assert counts == {"a": 1000, "b": 3000}


def test_no_traffic_is_503():
    with pytest.raises(RouteError) as e:
        pick(endpoint(variant("a", 1, 0), variant("b", 2, 0)))
    assert e.value.status == 503
    assert e.value.message == "endpoint 'vision.fraud-scorer' has no variant with traffic"
    with pytest.raises(RouteError) as e:
        pick(endpoint())
    assert e.value.status == 503


# -- versions and labels ----------------------------------------------------------------------------

def test_version_number_restricts_candidates():
    assert pick(version="3", rand=0.99) is CANARY
    assert pick(version="2", rand=0.0) is STABLE


def test_label_resolves_through_labels():
    assert pick(version="canary", rand=0.99) is CANARY
    assert pick(version="stable", rand=0.0) is STABLE


def test_unknown_label_is_404():
    with pytest.raises(RouteError) as e:
        pick(version="beta")
    assert (e.value.status, e.value.message) == (404, "endpoint 'vision.fraud-scorer' has no label 'beta'")


def test_unserved_version_is_404():
    with pytest.raises(RouteError) as e:
        pick(version="7")
    assert (e.value.status, e.value.message) == (404, "endpoint 'vision.fraud-scorer' does not serve version 7")
    # A label pointing at a version that no variant serves.
    with pytest.raises(RouteError) as e:
        pick(endpoint(STABLE, labels={"canary": 9}), version="canary")
    assert (e.value.status, e.value.message) == (404, "endpoint 'vision.fraud-scorer' does not serve version 9")


def test_version_with_leading_zero_is_the_number():
    assert pick(version="03") is CANARY


def test_non_ascii_digits_are_not_a_version():
    with pytest.raises(RouteError) as e:
        pick(version="\u0663")  # ARABIC-INDIC DIGIT THREE: str.isdigit() says yes, int() takes it
    assert e.value.status == 404


def test_explicit_version_reaches_a_canary_at_zero_weight():
    ep = endpoint(variant("canary", 3, 0), variant("stable", 2, 100))
    assert pick(ep, version="3").name == "canary"
    assert pick(ep, version="canary", sticky_key="user-1").name == "canary"
    # Without the ask it gets nothing.
    assert {pick(ep, rand=r / 50).name for r in range(50)} == {"stable"}


def test_zero_weight_candidates_of_one_version_share_equally():
    ep = endpoint(variant("a", 3, 0, servers=(1,)), variant("b", 3, 0, servers=(2,)), variant("s", 2, 10))
    assert pick(ep, version="3", rand=0.2).name == "a"
    assert pick(ep, version="3", rand=0.7).name == "b"
    counts = Counter(pick(ep, version="3", sticky_key=f"u{i}").name for i in range(2000))
    assert counts.keys() == {"a", "b"} and 800 < counts["a"] < 1200


def test_candidates_of_one_version_keep_their_weights():
    ep = endpoint(variant("a", 3, 0), variant("b", 3, 5), variant("s", 2, 10))
    assert {pick(ep, version="3", rand=r / 20).name for r in range(20)} == {"b"}


# -- explicit variant -------------------------------------------------------------------------------

def test_explicit_variant_wins_over_weights_and_stickiness():
    ep = endpoint(variant("canary", 3, 0), variant("stable", 2, 100))
    assert pick(ep, explicit_variant="canary", sticky_key="user-1", rand=0.99).name == "canary"


def test_explicit_unknown_variant_is_404():
    with pytest.raises(RouteError) as e:
        pick(explicit_variant="green")
    assert (e.value.status, e.value.message) == (404, "endpoint 'vision.fraud-scorer' has no variant 'green'")


def test_explicit_variant_may_name_the_shadow():
    shadow = Shadow(variant=variant("shadow-v4", 4, 0, servers=(3,)), percent=10.0, rtol=1e-5, atol=1e-6)
    ep = endpoint(CANARY, STABLE, shadow=shadow)
    assert pick(ep, explicit_variant="shadow-v4") is shadow.variant


def test_explicit_variant_with_matching_version():
    assert pick(explicit_variant="canary", version="canary") is CANARY
    assert pick(explicit_variant="canary", version="3") is CANARY


def test_explicit_variant_contradicting_the_version_is_400():
    with pytest.raises(RouteError) as e:
        pick(explicit_variant="canary", version="2")
    assert e.value.status == 400
    assert "serves version 3, not version 2" in e.value.message
    with pytest.raises(RouteError) as e:
        pick(explicit_variant="canary", version="nope")
    assert e.value.status == 404


# -- sticky buckets ---------------------------------------------------------------------------------

def test_bucket_ranges_are_the_documented_cumulative_floors():
    assert routing.bucket_ranges([5, 95]) == [(0, 500), (500, 10_000)]
    assert routing.bucket_ranges([1, 1, 1]) == [(0, 3333), (3333, 6666), (6666, 10_000)]
    assert routing.bucket_ranges([0, 7, 0, 3]) == [(0, 0), (0, 7000), (7000, 7000), (7000, 10_000)]


@given(st.lists(st.integers(0, 1_000_000), min_size=1, max_size=8).filter(lambda ws: sum(ws) > 0))
def test_bucket_ranges_tile_all_buckets(weights):
    ranges = routing.bucket_ranges(weights)
    assert ranges[0][0] == 0 and ranges[-1][1] == BUCKETS
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    for w, (start, end) in zip(weights, ranges):
        assert abs((end - start) - w * BUCKETS / sum(weights)) <= 1


def test_sticky_key_is_deterministic_and_matches_its_bucket():
    ep = endpoint(variant("canary", 3, 5), variant("stable", 2, 95))
    for i in range(1000):
        key = f"user-{i}"
        expected = "canary" if bucket_of(key) < 500 else "stable"
        assert pick(ep, sticky_key=key, rand=0.0).name == expected
        assert pick(ep, sticky_key=key, rand=0.99).name == expected  # rand plays no part


def test_sticky_ignores_rand_but_honours_version():
    key = next(f"u{i}" for i in range(10_000) if bucket_of(f"u{i}") >= 500)  # a stable user
    assert pick(sticky_key=key).name == "stable"
    assert pick(sticky_key=key, version="canary").name == "canary"


KEYS = [f"user-{i}" for i in range(3000)]


def _in_canary(weight_canary, weight_rest, keys=KEYS):
    ep = endpoint(variant("canary", 3, weight_canary), variant("stable", 2, weight_rest))
    return {k for k in keys if pick(ep, sticky_key=k).name == "canary"}


def test_canary_growing_from_1_to_100_percent_never_loses_a_key():
    previous = set()
    for pct in range(1, 101):
        now = _in_canary(pct, 100 - pct)
        assert previous <= now, f"keys left the canary at {pct}%: {sorted(previous - now)[:5]}"
        assert abs(len(now) - len(KEYS) * pct / 100) < len(KEYS) * 0.04
        previous = now
    assert previous == set(KEYS)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(min_size=0, max_size=24), min_size=1, max_size=50),
    st.integers(1, 100), st.integers(1, 100),
    st.lists(st.integers(0, 50), min_size=1, max_size=4),
)
def test_monotonic_for_any_weights_and_keys(keys, a, b, others):
    """Growing the first variant's share (whatever the later variants' split) only adds keys to it."""
    low, high = min(a, b), max(a, b)
    rest = sum(others) or 1
    others = others if sum(others) else [1]

    def canary_keys(w):
        # The first variant's share rises with w; the others keep their proportions.
        ep = endpoint(variant("canary", 3, w * rest), *[variant(f"v{i}", 2, o * (100 - w) if w < 100 else 0)
                                                         for i, o in enumerate(others)], labels={})
        return {k for k in keys if pick(ep, sticky_key=k).name == "canary"}

    assert canary_keys(low) <= canary_keys(high)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 99), st.integers(1, 99), st.text(max_size=32))
def test_monotonic_two_variants(p, q, key):
    low, high = min(p, q), max(p, q)
    ep_low = endpoint(variant("canary", 3, low), variant("stable", 2, 100 - low))
    ep_high = endpoint(variant("canary", 3, high), variant("stable", 2, 100 - high))
    if pick(ep_low, sticky_key=key).name == "canary":
        assert pick(ep_high, sticky_key=key).name == "canary"
    # And symmetrically the last variant only gains keys as the first shrinks.
    if pick(ep_high, sticky_key=key).name == "stable":
        assert pick(ep_low, sticky_key=key).name == "stable"


# -- least_outstanding ------------------------------------------------------------------------------

def test_least_outstanding_picks_the_idlest():
    assert routing.least_outstanding([1, 2, 3], {1: 4, 2: 1, 3: 2}, (), 0.0) == 2


def test_least_outstanding_absent_counts_as_zero():
    assert routing.least_outstanding([1, 2], {1: 1}, (), 0.99) == 2


def test_least_outstanding_spreads_ties_by_rand():
    chosen = [routing.least_outstanding([1, 2, 3], {}, (), r / 30) for r in range(30)]
    assert Counter(chosen) == {1: 10, 2: 10, 3: 10}
    assert routing.least_outstanding([1, 2, 3], {}, (), 1.0 - 2**-53) == 3


def test_least_outstanding_skips_excluded():
    assert routing.least_outstanding([1, 2, 3], {1: 0, 2: 5, 3: 9}, {1}, 0.0) == 2
    assert routing.least_outstanding([1, 2], {}, {1, 2}, 0.5) is None
    assert routing.least_outstanding([], {}, (), 0.5) is None


# -- paths ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,expected", [
    ("/v2/models/vision.fraud-scorer", ("vision.fraud-scorer", None, "metadata")),
    ("/v2/models/vision.fraud-scorer/infer", ("vision.fraud-scorer", None, "infer")),
    ("/v2/models/vision.fraud-scorer/ready", ("vision.fraud-scorer", None, "ready")),
    ("/v2/models/vision.fraud-scorer/config", ("vision.fraud-scorer", None, "config")),
    ("/v2/models/vision.fraud-scorer/stats", ("vision.fraud-scorer", None, "stats")),
    ("/v2/models/vision.fraud-scorer/versions/3", ("vision.fraud-scorer", "3", "metadata")),
    ("/v2/models/vision.fraud-scorer/versions/3/infer", ("vision.fraud-scorer", "3", "infer")),
    ("/v2/models/vision.fraud-scorer/versions/canary/infer", ("vision.fraud-scorer", "canary", "infer")),
    ("/v2/models/vision.fraud-scorer/versions/3/config", ("vision.fraud-scorer", "3", "config")),
    ("/v2/models/vision%2Efraud-scorer/infer", ("vision.fraud-scorer", None, "infer")),
    ("/v2/models/a%2Fb/infer", ("a/b", None, "infer")),  # decoded after splitting: still one segment
    ("/v2/models/vision.fraud-scorer/infer?x=1", ("vision.fraud-scorer", None, "infer")),
    ("/v2/models/versions", ("versions", None, "metadata")),
    ("/v2/models/infer", ("infer", None, "metadata")),
])
def test_parse_model_path(path, expected):
    assert routing.parse_model_path(path) == ModelRequest(*expected)


@pytest.mark.parametrize("path", [
    "/v2", "/v2/health/ready", "/v2/models", "/v2/models/", "/v2/models//infer", "/v2/models/x/",
    "/v2/models/x/infer/", "/v2/models/x/versions/", "/v2/models/x/versions//infer",
    "/v2/models/x/generate", "/v2/models/x/generate_stream", "/v2/models/x/trace/setting",
    "/v2/models/x/versions/3/unknown", "/v2/models/stats", "/v2/repository/index", "/v1/models/x",
    "/v2/models/x/versions/1/2/infer",
])
def test_not_a_model_path(path):
    assert routing.parse_model_path(path) is None


def test_upstream_path():
    assert routing.upstream_path("vision.fraud-scorer", 3, "metadata") == "/v2/models/vision.fraud-scorer/versions/3"
    for action in ("infer", "ready", "config", "stats"):
        assert routing.upstream_path("m", 12, action) == f"/v2/models/m/versions/12/{action}"
    assert routing.upstream_path("a b/c", 1, "infer") == "/v2/models/a%20b%2Fc/versions/1/infer"
    with pytest.raises(ValueError):
        routing.upstream_path("m", 1, "load")


@pytest.mark.parametrize("path", ["/v2/models/x/versions/7/infer", "/v2/models/x"])
def test_upstream_path_round_trips(path):
    req = routing.parse_model_path(path)
    assert routing.upstream_path(req.name, int(req.version or 7), req.action) == "/v2/models/x/versions/7" + (
        "/infer" if req.action == "infer" else "")


@pytest.mark.parametrize("path,refused", [
    ("/v2/repository/index", True),
    ("/v2/repository/models/x/load", True),
    ("/v2/repository/models/x/unload?x=1", True),
    ("/v2/repository", True),
    ("/v2/systemsharedmemory/status", True),
    ("/v2/systemsharedmemory/region/r/register", True),
    ("/v2/cudasharedmemory/region/r/unregister", True),
    ("/v2/trace/setting", True),
    ("/v2/logging", True),
    ("/v2/models/stats", True),
    ("/v2/models/x/trace/setting", True),
    ("/v2/models/x/infer", False),
    ("/v2/models/x/stats", False),
    ("/v2/health/ready", False),
    ("/v2", False),
    ("/v2/repositoryx", False),
    ("/v2/tracer", False),
])
def test_refused_paths(path, refused):
    assert routing.is_refused_path(path) is refused


def test_is_repository_path():
    assert routing.is_repository_path("/v2/repository/index")
    assert routing.is_repository_path("/v2/repository/models/m/load")
    assert not routing.is_repository_path("/v2/models/m/infer")
    assert not routing.is_repository_path("/v2/systemsharedmemory/status")


# -- variants with no READY server -----------------------------------------------------------------

UNPLACED_CANARY = variant("canary", 3, 50, servers=())


def test_a_variant_with_no_ready_server_takes_no_weighted_or_sticky_traffic():
    ep = endpoint(UNPLACED_CANARY, STABLE)
    assert {pick(ep, rand=r / 100).name for r in range(100)} == {"stable"}
    assert {pick(ep, sticky_key=f"user-{i}").name for i in range(500)} == {"stable"}
    # The same endpoint with the canary placed sends it about half.
    placed = endpoint(variant("canary", 3, 50), STABLE)
    assert {pick(placed, rand=r / 100).name for r in range(100)} == {"canary", "stable"}


def test_when_no_variant_has_a_server_one_is_still_chosen_so_the_caller_answers_503():
    ep = endpoint(UNPLACED_CANARY, variant("stable", 2, 50, servers=()))
    assert pick(ep, rand=0.1).servers == () and pick(ep, rand=0.9).servers == ()


def test_an_explicit_version_or_variant_reaches_an_unplaced_variant_for_a_clear_503():
    ep = endpoint(UNPLACED_CANARY, STABLE)
    assert pick(ep, version="canary") is UNPLACED_CANARY
    assert pick(ep, version="3") is UNPLACED_CANARY
    assert pick(ep, explicit_variant="canary") is UNPLACED_CANARY
