"""Deployment tasks: each takes ids and calls a service in controlplane.deployments."""
from controlplane.deployments import services
from workers.base import task


@task("deployments.advance", max_retries=2)
def advance(deployment_id: int):
    """Drive one deployment until it must wait (a bake, a person, the window). A second delivery,
    or one for a deployment another worker drives, returns at once."""
    return services.deployment_advance(deployment_id)


@task("deployments.tick", max_retries=0)
def tick():
    """Every second: start due schedules, roll back past deadlines, and hand deployments whose
    wait is over (or whose worker died) to a worker. Not retried: the next tick does the same."""
    return len(services.deployments_tick())


@task("deployments.guard_tripped", max_retries=2)
def guard_tripped(endpoint: str, version: int):
    """A gateway stopped sending to a failing green: confirm it with a rollback."""
    return services.deployment_guard_tripped(endpoint=endpoint, version=version)
