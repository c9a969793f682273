"""devices.py: distinct (server, GPU index) devices, and what a team holds as reservations come
and go. No database."""
from collections import Counter

import pytest

from controlplane.quotas.devices import device_holders, devices_held, devices_held_by_step, devices_of, indexes_text

A, B = 1, 2  # server ids


def test_devices_of_names_each_gpu_of_one_server():
    assert devices_of(A, [0, 2, 2]) == {(A, 0), (A, 2)}
    assert devices_of(A, []) == frozenset()


def test_device_holders_counts_the_reservations_on_each_device():
    assert device_holders([(A, [0, 1]), (A, [1]), (B, [1])]) == Counter({(A, 0): 1, (A, 1): 2, (B, 1): 1})


def test_the_same_device_held_twice_counts_once():
    held = {(A, 0), (A, 1)}
    assert devices_held(held) == 2
    assert devices_held(held, plus=[(A, [0, 1])]) == 2  # a same-servers green: no new device
    assert devices_held(held, plus=[(A, [1, 2])]) == 3
    assert devices_held(held, plus=[(B, [0, 1])]) == 4  # GPU 0 of another server is another device
    assert devices_held(set(), plus=[(A, [0]), (A, [0]), (A, [0])]) == 1


def test_releasing_a_shared_device_keeps_it_held_when_holders_are_counted():
    holders = device_holders([(A, [0, 1]), (A, [1])])  # blue on 0-1, another model on 1
    assert devices_held(holders, minus=[(A, [0, 1])]) == 1  # GPU 1 is still the other model's
    # with a plain set each device has one holder, so the same release frees both
    assert devices_held({(A, 0), (A, 1)}, minus=[(A, [0, 1])]) == 0


def test_a_mapping_ignores_devices_held_by_nobody():
    assert devices_held({(A, 0): 0, (A, 1): 2}) == 1


def test_releasing_what_is_not_held_is_a_planning_mistake():
    with pytest.raises(ValueError, match="GPU 3 of server 1"):
        devices_held({(A, 0)}, minus=[(A, [3])])
    with pytest.raises(ValueError):
        devices_held({(A, 0)}, minus=[(A, [0]), (A, [0])])


def test_a_new_servers_blue_green_over_time():
    """Blue on A's 4 GPUs; green on B's 4 reserved as the surge at planning, then placed (the same
    devices, counted once), then blue retires and the surge is released."""
    blue, green = (A, range(4)), (B, range(4))
    steps = [
        ([green], []),  # surge reserved
        ([green], []),  # green's own placement reservation, on the same devices
        ([], [blue]),  # blue retired
        ([], [green]),  # the surge released; green's placement still holds B
    ]
    assert devices_held_by_step(device_holders([blue]), steps) == [8, 8, 4, 4]
    assert max(devices_held_by_step(device_holders([blue]), steps)) == 8


def test_a_same_servers_green_never_adds_a_device():
    blue = (A, [0, 1])
    assert devices_held_by_step(device_holders([blue]), [([blue], []), ([], [blue])]) == [2, 2]


def test_the_input_is_not_changed():
    held = {(A, 0)}
    holders = Counter({(A, 0): 1})
    devices_held(held, plus=[(A, [1])])
    devices_held(holders, minus=[(A, [0])])
    assert held == {(A, 0)} and holders == Counter({(A, 0): 1})


@pytest.mark.parametrize("indexes,text", [([], ""), ([3], "3"), ([0, 1, 2, 3], "0-3"), ([5, 0, 1, 2], "0-2, 5"),
                                          ([1, 3, 4, 7, 8, 9], "1, 3-4, 7-9"), ([2, 2], "2")])
def test_indexes_text(indexes, text):
    assert indexes_text(indexes) == text
