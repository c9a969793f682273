import logging

from controlplane.endpoints import publication, replicas
from workers.base import task

log = logging.getLogger(__name__)


@task("endpoints.publish_table", max_retries=0)
def publish_table():
    """Periodic safety net under request_publish(): publish the routing table if it changed (a token
    expired, a hook was missed), push it to Redis again if Redis lost it, and forget gateway
    replicas gone quiet. Not retried: the next tick, seconds later, does the same."""
    version = publication.publish_if_changed()
    publication.repair_redis()
    pruned = replicas.replicas_prune()
    if pruned:
        log.info("forgot %s gateway replica(s) unseen for over %s s", pruned, replicas.PRUNE_AFTER_S)
    return version
