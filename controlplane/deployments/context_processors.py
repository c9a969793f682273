"""The RollbackFailed banner on every page: the user's teams' deployments whose rollback could not
finish. Lazy: the one query runs only when a template shows the banner (base.html does; htmx
fragments do not), and never for an anonymous user."""
from django.utils.functional import SimpleLazyObject

from controlplane.deployments.selectors import rollback_failed_visible


class RollbackFailed:
    """What the banner shows: ``rows`` (at most a few) and ``total``."""

    def __init__(self, user):
        self.rows, self.total = rollback_failed_visible(user)
        self.more = self.total - len(self.rows)

    def __bool__(self):
        return bool(self.rows)


def rollback_failed(request):
    return {"rollback_failed": SimpleLazyObject(lambda: RollbackFailed(getattr(request, "user", None)))}
