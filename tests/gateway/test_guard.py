"""gateway.guard (the window and the trip rule, pure) and select_variant with tripped variants."""
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guard import MAX_BUCKETS, MIN_BUCKETS, Guards, Trip, Window, breached, buckets_for
from gateway.routing import BUCKETS, RouteError, bucket_of, bucket_ranges, select_variant
from gateway.table import FORMAT, Endpoint, Guard, Variant, parse_table

G = Guard(max_error_ratio=0.05, min_requests=10, window_s=10.0)


# -- the window ------------------------------------------------------------------------------------

def test_buckets_are_a_second_wide_between_the_bounds():
    assert [buckets_for(w) for w in (0.5, 1, 10, 10.5, 30, 60, 61, 600)] == [
        MIN_BUCKETS, MIN_BUCKETS, 10, 11, 30, 60, MAX_BUCKETS, MAX_BUCKETS]


def test_the_window_counts_the_last_window_s_seconds():
    w = Window(10.0, now=100.0)
    for t in range(100, 110):  # one answer a second, every other one an error
        w.add(error=t % 2 == 0, now=t + 0.5)
    assert (w.requests, w.errors) == (10, 5)
    w.add(error=False, now=110.5)  # the bucket of 100.x has left the window
    assert (w.requests, w.errors) == (10, 4)
    w.add(error=False, now=115.2)  # 101 to 105 left
    assert (w.requests, w.errors) == (6, 2)
    w.add(error=True, now=1000.0)  # a long silence empties it
    assert (w.requests, w.errors) == (1, 1)


def test_many_answers_in_one_bucket_and_a_clock_that_goes_back():
    w = Window(1.0, now=5.0)  # 10 buckets of 0.1 s
    for _ in range(1000):
        w.add(error=False, now=5.05)
    w.add(error=True, now=4.0)  # never with a monotonic clock; counted in the newest bucket
    assert (w.requests, w.errors) == (1001, 1)
    w.add(error=False, now=6.04)  # 5.0-5.1 is more than a window ago
    assert (w.requests, w.errors) == (1, 0)


@settings(max_examples=200, deadline=None)
@given(window=st.sampled_from([0.5, 3.0, 10.0, 45.0, 600.0]),
       steps=st.lists(st.tuples(st.floats(0, 30, allow_nan=False), st.booleans()), max_size=80))
def test_the_running_totals_equal_the_sum_of_the_buckets(window, steps):
    w = Window(window, now=0.0)
    now = 0.0
    for dt, error in steps:
        now += dt
        w.add(error, now)
        assert w.requests == sum(w.counts) and w.errors == sum(w.errs)
        assert 0 <= w.errors <= w.requests


@pytest.mark.parametrize("requests, errors, trips", [
    (9, 9, False),  # below min_requests: never
    (10, 0, False),
    (10, 1, True),  # 10% > 5%
    (20, 1, False),  # exactly 5% is not above it
    (21, 2, True),
    (1000, 50, False),
    (1000, 51, True),
])
def test_the_trip_rule(requests, errors, trips):
    assert breached(G, requests, errors) is trips


def test_a_ratio_of_1_never_trips_and_0_trips_on_any_error():
    assert not breached(Guard(1.0, 1, 10.0), 100, 100)
    assert breached(Guard(0.0, 1, 10.0), 100, 1) and not breached(Guard(0.0, 1, 10.0), 100, 0)


# -- Guards: one worker's state --------------------------------------------------------------------

def table(version, *, green_guard=G, green_version=3, with_green=True):
    guard = None if green_guard is None else {"max_error_ratio": green_guard.max_error_ratio,
                                              "min_requests": green_guard.min_requests,
                                              "window_s": green_guard.window_s}
    variants = [{"name": "green", "version": green_version, "weight": 50, "model": "m", "servers": [1],
                 "guard": guard}] if with_green else []
    variants.append({"name": "blue", "version": 2, "weight": 50, "model": "m", "servers": [1], "guard": None})
    return parse_table({
        "format": FORMAT, "version": version, "generated_at": 1.0, "tokens": [],
        "servers": [{"id": 1, "name": "a", "url": "http://127.0.0.1:9", "healthy": True}],
        "endpoints": [{"name": "team.e", "team": "team", "access": "open", "sticky": None, "labels": {},
                       "variants": variants, "shadow": None}],
    })


def answer(guards, error, now, *, guard=G, version=3, name="green"):
    return guards.observe("team.e", name, version, guard, error, now, 1_764_600_000.0 + now)


def test_a_guard_trips_once_at_min_requests_and_stops_counting():
    guards = Guards()
    guards.sync(table(1), now=0.0)
    for i in range(9):
        assert answer(guards, True, now=0.1 * i) is None  # 9 errors, but not yet 10 answers
    trip = answer(guards, False, now=1.0)  # the tenth answer, a success, still trips: 90%
    assert trip == Trip(endpoint="team.e", variant="green", version=3, errors=9, requests=10, error_ratio=0.9,
                        tripped_at=1_764_600_001.0)
    assert guards.tripped == {"team.e": frozenset({"green"})}
    assert answer(guards, True, now=1.1) is None  # tripped: nothing more is counted, nothing trips twice
    assert guards.report() == [trip.as_json()]
    assert trip.as_json() == {"endpoint": "team.e", "variant": "green", "version": 3, "errors": 9, "requests": 10,
                              "error_ratio": 0.9, "tripped_at": 1_764_600_001.0}


def test_successes_keep_a_guard_closed_and_old_errors_leave_the_window():
    guards = Guards()
    guards.sync(table(1), now=0.0)
    for i in range(100):
        assert answer(guards, i % 25 == 24, now=i * 0.01) is None  # 4%
    for i in range(20):  # 20 s later the earlier answers are gone; a fresh 1-in-20 is 5%, not above it
        assert answer(guards, i == 19, now=20.0 + i * 0.01) is None
    assert guards.tripped == {}


def test_a_trip_holds_across_tables_that_keep_the_guard_and_ends_with_a_new_guard_version_or_no_variant():
    guards = Guards()
    guards.sync(table(1), now=0.0)
    for i in range(10):
        answer(guards, True, now=i * 0.01)
    assert guards.tripped == {"team.e": frozenset({"green"})}
    assert guards.sync(table(2), now=1.0) == []  # an unrelated change: still tripped
    assert guards.tripped == {"team.e": frozenset({"green"})}

    other = Guard(max_error_ratio=0.05, min_requests=11, window_s=10.0)
    [ended] = guards.sync(table(3, green_guard=other), now=2.0)  # a retry with a fresh guard
    assert (ended.variant, ended.version) == ("green", 3)
    assert guards.tripped == {} and guards.report() == []
    assert answer(guards, True, now=2.1) is None  # an answer under the old guard is not counted
    for i in range(11):
        trip = answer(guards, True, now=2.2 + i * 0.01, guard=other)
    assert trip is not None and trip.requests == 11

    assert len(guards.sync(table(4, green_guard=other, green_version=4), now=3.0)) == 1  # a new version
    assert guards.tripped == {}
    for i in range(11):
        answer(guards, True, now=3.1 + i * 0.01, guard=other, version=4)
    assert guards.tripped == {"team.e": frozenset({"green"})}
    assert len(guards.sync(table(5, with_green=False), now=4.0)) == 1  # green is gone
    assert guards.tripped == {} and guards.windows == {}
    assert guards.sync(table(6, green_guard=None), now=5.0) == [] and guards.windows == {}  # no guard: nothing


def test_unguarded_variants_are_never_counted():
    guards = Guards()
    guards.sync(table(1), now=0.0)
    assert set(guards.windows) == {("team.e", "green", 3, G)}
    for i in range(50):
        assert answer(guards, True, now=i * 0.01, name="blue", version=2) is None
    assert guards.tripped == {}


# -- select_variant with tripped variants -----------------------------------------------------------

def variant(name, version, weight, servers=(1,)):
    return Variant(name=name, version=version, weight=weight, model="m", servers=tuple(servers))


def endpoint(*variants):
    return Endpoint(name="team.e", team="team", access="open", sticky_header="X-User-Id", sticky_cookie=None,
                    labels={"green": 3, "blue": 2}, variants=tuple(variants), shadow=None)


GREEN, BLUE = variant("green", 3, 50), variant("blue", 2, 50)
EP = endpoint(GREEN, BLUE)
KEYS = [f"user-{i}" for i in range(4000)]


def pick(ep=EP, *, tripped=(), version=None, sticky_key=None, explicit_variant=None, rand=0.25):
    return select_variant(ep, version=version, sticky_key=sticky_key, explicit_variant=explicit_variant,
                          rand=rand, tripped=tripped).name


def test_a_tripped_variant_gets_no_weighted_traffic():
    rands = [i / 1000 for i in range(1000)]
    assert Counter(pick(rand=r) for r in rands) == {"green": 500, "blue": 500}
    assert Counter(pick(rand=r, tripped={"green"}) for r in rands) == {"blue": 1000}
    assert Counter(pick(rand=r, tripped={"blue"}) for r in rands) == {"green": 1000}


def test_sticky_keys_of_a_tripped_variant_move_and_no_other_key_does():
    before = {k: pick(sticky_key=k) for k in KEYS}
    after = {k: pick(sticky_key=k, tripped={"green"}) for k in KEYS}
    assert set(after.values()) == {"blue"}
    # Three variants: green's keys spread over the others by weight; blue's and red's stay put.
    ep = endpoint(variant("green", 3, 20), variant("blue", 2, 60), variant("red", 1, 20))
    before = {k: pick(ep, sticky_key=k) for k in KEYS}
    after = {k: pick(ep, sticky_key=k, tripped={"green"}) for k in KEYS}
    assert all(after[k] == v for k, v in before.items() if v != "green")
    moved = Counter(after[k] for k, v in before.items() if v == "green")
    assert set(moved) == {"blue", "red"} and 2 < moved["blue"] / moved["red"] < 4.5, moved  # 60:20
    assert Counter(pick(ep, rand=i / 1000, tripped={"green"}) for i in range(1000)) == {"blue": 750, "red": 250}


@settings(max_examples=300, deadline=None)
@given(weights=st.lists(st.integers(0, 100), min_size=2, max_size=5).filter(lambda w: sum(w) > 0),
       tripped_index=st.integers(0, 4), key=st.text(max_size=12))
def test_a_moved_key_goes_to_an_open_variant_and_a_kept_one_stays(weights, tripped_index, key):
    ep = endpoint(*(variant(f"v{i}", 1, w) for i, w in enumerate(weights)))
    tripped = {f"v{tripped_index % len(weights)}"}
    before = pick(ep, sticky_key=key)
    open_weight = sum(w for i, w in enumerate(weights) if f"v{i}" not in tripped)
    if open_weight == 0:
        with pytest.raises(RouteError) as refused:
            pick(ep, sticky_key=key, tripped=tripped)
        assert refused.value.status == 503 and "guard" in refused.value.message
        return
    after = pick(ep, sticky_key=key, tripped=tripped)
    assert after not in tripped and weights[int(after[1:])] > 0
    if before not in tripped:
        assert after == before


def test_the_moved_bucket_is_the_place_within_the_lost_range_stretched():
    start, end = bucket_ranges([50, 50])[0]
    key = next(k for k in KEYS if start <= bucket_of(k) < end)
    assert (start, end, BUCKETS) == (0, 5000, 10_000)
    ep = endpoint(GREEN, variant("blue", 2, 25), variant("red", 1, 25))
    stretched = (bucket_of(key) - start) * BUCKETS // (end - start)
    assert pick(ep, sticky_key=key, tripped={"green"}) == ("blue" if stretched < 5000 else "red")


def test_the_explicit_variant_and_an_explicit_version_still_reach_a_tripped_variant():
    assert pick(explicit_variant="green", tripped={"green"}) == "green"
    assert pick(version="3", tripped={"green"}) == "green"  # as at weight 0: a version asked is served
    assert pick(version="green", tripped={"green"}) == "green"  # by its label too
    assert pick(version="2", tripped={"green"}) == "blue"


def test_when_only_tripped_variants_have_traffic_it_is_a_503_that_says_why():
    ep = endpoint(variant("green", 3, 100), variant("blue", 2, 0))
    with pytest.raises(RouteError) as refused:
        pick(ep, tripped={"green"})
    assert refused.value.status == 503
    assert refused.value.message == "endpoint 'team.e' has no variant with traffic: the guard of variant 'green' tripped"
    # A blue without a ready server takes no traffic either: green tripped leaves nothing.
    ep = endpoint(variant("green", 3, 50), variant("blue", 2, 50, servers=()))
    with pytest.raises(RouteError):
        pick(ep, tripped={"green"})


def test_nothing_tripped_is_the_plain_choice():
    for k in KEYS[:200]:
        assert pick(sticky_key=k, tripped=()) == pick(sticky_key=k, tripped=frozenset({"nope"}))
