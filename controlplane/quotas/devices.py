"""GPU devices, the unit of the quota. Pure: no ORM, no I/O.

A device is one GPU of one server, named ``(server id, GPU index)``. A team holds the *distinct*
devices that its active reservations name: two reservations on the same GPU (two versions loaded
side by side, two models sharing a GPU, a deployment's surge and green's own placement) hold it
once. So this module works on sets and on counts of holders, never on sums of GPUs.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

Device = tuple[int, int]  # (server id, GPU index)
Holding = tuple[int, Iterable[int]]  # one reservation: (server id, its GPU indexes)


def devices_of(server_id: int, indexes: Iterable[int]) -> frozenset[Device]:
    """The devices named by GPU ``indexes`` of one server."""
    return frozenset((server_id, index) for index in indexes)


def device_holders(holdings: Iterable[Holding]) -> Counter[Device]:
    """How many of ``holdings`` (one per reservation) hold each device."""
    holders: Counter[Device] = Counter()
    for server_id, indexes in holdings:
        holders.update(devices_of(server_id, indexes))
    return holders


def _holders(held: Iterable[Device] | Mapping[Device, int]) -> Counter[Device]:
    if isinstance(held, Mapping):
        return Counter({device: n for device, n in held.items() if n > 0})
    return Counter(set(held))


def devices_held(held: Iterable[Device] | Mapping[Device, int], *, plus: Iterable[Holding] = (),
                 minus: Iterable[Holding] = ()) -> int:
    """Distinct devices held once the reservations ``plus`` are added and ``minus`` released.

    ``held`` is what the team holds now: a set of devices (``team_devices_held``), each then held
    by one reservation, or a count of holders per device (``team_device_holders``). Pass the
    counts whenever ``minus`` may release a device that another reservation also holds (blue
    retiring from a GPU it shares with another model): with a plain set that device would
    wrongly count as freed. ``plus`` and ``minus`` are ``(server id, GPU indexes)`` holdings, one
    per reservation. Releasing a device nobody holds is a planning mistake: ValueError.
    """
    return devices_held_by_step(held, [(plus, minus)])[0]


def devices_held_by_step(held: Iterable[Device] | Mapping[Device, int],
                         steps: Iterable[tuple[Iterable[Holding], Iterable[Holding]]]) -> list[int]:
    """The distinct devices held after each step, each step a ``(plus, minus)`` pair applied to
    what the previous steps left (see ``devices_held``). A plan's peak is ``max()`` of it."""
    holders = _holders(held)
    counts = []
    for plus, minus in steps:
        holders.update(device_holders(plus))
        for device, n in device_holders(minus).items():
            if holders[device] < n:
                raise ValueError(f"GPU {device[1]} of server {device[0]} is released more often than it is held")
            holders[device] -= n
        counts.append(sum(1 for n in holders.values() if n > 0))
    return counts


def indexes_text(indexes: Iterable[int]) -> str:
    """GPU indexes for people, runs collapsed: [0, 1, 2, 5] -> "0-2, 5"."""
    runs: list[list[int]] = []
    for index in sorted(set(indexes)):
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
