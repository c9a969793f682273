"""The plan of a deployment: its phases with their traffic share, the projected duration and the
GPU devices the team holds at each moment against its quota. Pure: callers pass what they read.

Devices are counted as the quota counts them: distinct (server, GPU index) pairs. A same-servers
green adds no device; a new-servers green adds its devices (the surge) from provisioning until
blue retires, when blue's devices that green does not share are released.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from controlplane.deployments.spec import Step

Device = tuple[int, int]  # (server id, GPU index)


@dataclass(frozen=True)
class Phase:
    name: str  # "provisioning", "step 1", "approval", "promoting", "rollback window", "retired"
    traffic_percent: int  # green's share during the phase
    starts_at_s: float  # from the start of the rollout
    duration_s: float  # projected; 0 for a moment, None-like phases use 0
    devices_held: int  # the team's devices held during the phase, surge included
    note: str = ""


@dataclass(frozen=True)
class Plan:
    phases: tuple[Phase, ...]
    projected_s: float  # start to promotion (the rollback window is not part of it)
    quota: int
    held_now: int
    peak: int
    surge: int  # devices green adds while blue is loaded
    released_at_retire: int
    over_quota: bool

    def as_dict(self) -> dict:
        data = asdict(self)
        data["phases"] = [asdict(p) for p in self.phases]
        return data


def make_plan(*, steps: tuple[Step, ...], interval_s: int, approval_required: bool, rollback_window_s: int,
              load_s: float, quota: int, held: set[Device], green_devices: set[Device],
              other_devices: set[Device]) -> Plan:
    """``held``: what the team holds now. ``green_devices``: the devices green will occupy (for a
    same-servers green, the ones blue occupies already). ``other_devices``: those held by anything
    of the team but blue's placements (which retiring blue does not release)."""
    during = held | green_devices
    after = other_devices | green_devices
    surge = len(during) - len(held)
    released = len(during) - len(after)
    phases = []
    t = 0.0

    def add(name: str, percent: int, duration: float, devices: int, note: str = "") -> None:
        nonlocal t
        phases.append(Phase(name, percent, round(t, 3), round(duration, 3), devices, note))
        t += duration

    add("provisioning", 0, load_s, len(during), "green loads and answers a warm-up inference")
    for i, step in enumerate(steps, start=1):
        add(f"step {i}", step.percent, step.bake_s + interval_s, len(during),
            f"bake {step.bake_s} s, then gates every {interval_s} s")
    if approval_required:
        add("approval", steps[-1].percent if steps else 0, 0, len(during), "waits for a person")
    add("promoting", 100, 1, len(during), "label moves; 100% to green")
    projected = t
    add("rollback window", 100, rollback_window_s, len(during), "blue stays loaded for a one-click undo")
    add("retired", 100, 0, len(after), "blue unloaded, its devices released")
    peak = max(p.devices_held for p in phases)
    return Plan(
        phases=tuple(phases), projected_s=round(projected, 3), quota=quota, held_now=len(held), peak=peak,
        surge=surge, released_at_retire=released, over_quota=peak > quota and surge > 0,
    )
