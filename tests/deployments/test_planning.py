"""deployments.planning.make_plan: phases, projected duration, and GPU devices against the quota.
A device is a (server id, GPU index) pair, counted once however many things use it."""
import random

import pytest

from controlplane.deployments.planning import Phase, make_plan
from controlplane.deployments.spec import Step

STEPS = (Step(10, 60), Step(50, 120))
BLUE = {(1, 0), (1, 1)}
OTHER = {(2, 0)}  # held by something else of the team's
HELD = BLUE | OTHER


def plan(**overrides):
    args = dict(steps=STEPS, interval_s=10, approval_required=False, rollback_window_s=600, load_s=30.0, quota=8,
                held=HELD, green_devices=BLUE, other_devices=OTHER)
    overrides.pop("blue_devices", None)  # make_plan works from other_devices
    args.update(overrides)
    return make_plan(**args)


# -- devices against the quota ---------------------------------------------------------------------


def test_same_servers_adds_no_device():
    p = plan()
    assert (p.surge, p.released_at_retire, p.held_now, p.peak, p.over_quota) == (0, 0, 3, 3, False)
    assert {ph.devices_held for ph in p.phases} == {3}


def test_same_servers_is_never_over_quota_even_when_the_team_already_is():
    for quota in (0, 1, 2, 3):
        p = plan(quota=quota)
        assert (p.surge, p.over_quota, p.quota, p.peak) == (0, False, quota, 3)


def test_a_green_on_a_subset_of_held_devices_adds_nothing():
    p = plan(green_devices={(1, 1)}, quota=1)
    assert (p.surge, p.over_quota) == (0, False)
    assert p.released_at_retire == 1  # blue's (1, 0), which green does not share


def test_new_servers_surge_counts_green_devices():
    green = {(3, 0), (3, 1), (4, 0)}
    p = plan(green_devices=green)
    assert (p.held_now, p.surge, p.peak, p.released_at_retire) == (3, 3, 6, 2)
    assert p.phases[-1].devices_held == 4  # other + green


def test_new_servers_surge_counts_a_device_shared_with_held_once():
    green = {(3, 0), (1, 1), (2, 0)}  # one new, one of blue's, one of the other's
    p = plan(green_devices=green)
    assert (p.surge, p.peak) == (1, 4)
    assert p.released_at_retire == 1  # only (1, 0): (1, 1) stays with green
    assert p.phases[-1].devices_held == 3


def test_new_servers_over_quota_only_past_the_quota():
    green = {(3, 0), (3, 1)}
    assert plan(green_devices=green, quota=5).over_quota is False  # peak 5: exactly the quota
    p = plan(green_devices=green, quota=4)
    assert (p.peak, p.over_quota) == (5, True)
    assert plan(green_devices=green, quota=0).over_quota is True


def test_a_team_already_over_quota_cannot_add_a_surge():
    p = plan(green_devices={(9, 0)}, quota=2)
    assert (p.held_now, p.surge, p.over_quota) == (3, 1, True)


def test_a_team_with_nothing_held():
    p = plan(held=set(), blue_devices=set(), other_devices=set(), green_devices={(1, 0), (1, 1)}, quota=2)
    assert (p.held_now, p.surge, p.peak, p.released_at_retire, p.over_quota) == (0, 2, 2, 0, False)


def test_released_at_retire_is_blues_devices_that_nothing_else_keeps():
    blue, other = {(1, 0), (1, 1), (2, 0)}, {(2, 0), (5, 0)}  # (2, 0) is shared by blue and another model
    p = plan(held=blue | other, blue_devices=blue, other_devices=other, green_devices={(7, 0)})
    assert p.released_at_retire == 2
    assert p.phases[-1].devices_held == 3  # (2, 0), (5, 0) and green's (7, 0)


def test_device_counts_hold_for_random_sets():
    rng = random.Random(7)
    pool = [(s, g) for s in range(6) for g in range(4)]
    for _ in range(500):
        blue = set(rng.sample(pool, rng.randint(0, 6)))
        other = set(rng.sample(pool, rng.randint(0, 6)))
        green = set(rng.sample(pool, rng.randint(0, 6)))
        held, quota = blue | other, rng.randint(0, 20)
        p = plan(held=held, blue_devices=blue, other_devices=other, green_devices=green, quota=quota)
        assert p.held_now == len(held)
        assert p.surge == len(green - held)
        assert p.released_at_retire == len(blue - other - green)
        assert p.peak == len(held | green) >= p.held_now
        assert p.over_quota == (p.surge > 0 and len(held | green) > quota)
        if green <= held:
            assert p.surge == 0 and not p.over_quota
        assert p.phases[-1].devices_held == len(held | green) - p.released_at_retire
        assert all(ph.devices_held == len(held | green) for ph in p.phases[:-1])


# -- phases and the projected duration -------------------------------------------------------------


def test_phases_in_order_with_their_traffic():
    p = plan(steps=(Step(25, 60), Step(50, 60), Step(75, 60)))
    assert [(ph.name, ph.traffic_percent) for ph in p.phases] == [
        ("provisioning", 0), ("step 1", 25), ("step 2", 50), ("step 3", 75), ("promoting", 100),
        ("rollback window", 100), ("retired", 100),
    ]


def test_the_approval_phase_only_when_asked():
    assert "approval" not in [ph.name for ph in plan().phases]
    p = plan(approval_required=True)
    assert [ph.name for ph in p.phases] == [
        "provisioning", "step 1", "step 2", "approval", "promoting", "rollback window", "retired"]
    approval = p.phases[3]
    assert (approval.traffic_percent, approval.duration_s, approval.note) == (50, 0, "waits for a person")


def test_approval_adds_nothing_to_the_projection():
    assert plan(approval_required=True).projected_s == plan().projected_s


def test_projected_is_load_plus_each_bake_and_interval_plus_the_promotion():
    p = plan(load_s=12.5, interval_s=10, steps=(Step(10, 60), Step(50, 120)), rollback_window_s=3600)
    assert p.projected_s == 12.5 + (60 + 10) + (120 + 10) + 1
    assert p.projected_s == 213.5  # the rollback window is not part of it


@pytest.mark.parametrize(("steps", "interval", "load", "expected"), [
    ((Step(100, 0),), 10, 0, 0 + (0 + 10) + 1),
    ((Step(100, 300),), 5, 45.25, 45.25 + 305 + 1),
    (tuple(Step(p, 30) for p in range(5, 100, 5)), 10, 20, 20 + 19 * 40 + 1),
    ((), 10, 30, 30 + 1),
])
def test_projected_for_other_shapes(steps, interval, load, expected):
    assert plan(steps=steps, interval_s=interval, load_s=load).projected_s == pytest.approx(expected)


def test_phases_start_where_the_previous_one_ends():
    p = plan(approval_required=True, load_s=30.0, rollback_window_s=600)
    assert [(ph.name, ph.starts_at_s, ph.duration_s) for ph in p.phases] == [
        ("provisioning", 0, 30), ("step 1", 30, 70), ("step 2", 100, 130), ("approval", 230, 0),
        ("promoting", 230, 1), ("rollback window", 231, 600), ("retired", 831, 0),
    ]
    for before, after in zip(p.phases, p.phases[1:]):
        assert after.starts_at_s == pytest.approx(before.starts_at_s + before.duration_s)


def test_times_are_rounded_to_milliseconds():
    p = plan(load_s=1 / 3)
    assert p.phases[0].duration_s == 0.333 and p.phases[1].starts_at_s == 0.333
    assert p.projected_s == round(1 / 3 + 70 + 130 + 1, 3)


def test_step_notes_say_the_bake_and_the_interval():
    p = plan(interval_s=15)
    assert p.phases[1] == Phase("step 1", 10, 30.0, 75, 3, "bake 60 s, then gates every 15 s")


def test_approval_without_steps_is_at_zero_percent():
    p = plan(steps=(), approval_required=True)
    assert [(ph.name, ph.traffic_percent) for ph in p.phases][:3] == [
        ("provisioning", 0), ("approval", 0), ("promoting", 100)]


def test_the_plan_as_a_dict():
    data = plan(approval_required=True).as_dict()
    assert set(data) == {"phases", "projected_s", "quota", "held_now", "peak", "surge", "released_at_retire",
                         "over_quota"}
    assert isinstance(data["phases"], list) and data["phases"][0] == {
        "name": "provisioning", "traffic_percent": 0, "starts_at_s": 0.0, "duration_s": 30.0, "devices_held": 3,
        "note": "green loads and answers a warm-up inference"}
    assert [ph["name"] for ph in data["phases"]][3] == "approval"
