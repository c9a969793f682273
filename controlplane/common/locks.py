"""A best-effort lock in the shared cache (Redis in production), scoped to this database."""
import time
import uuid
from contextlib import contextmanager

from django.core.cache import cache
from django.db import connection


@contextmanager
def cache_lock(name: str, ttl: float, wait: float = 0.0):
    """Yields True if this caller holds ``name`` now, after waiting up to ``wait`` seconds for it;
    the lock expires after ``ttl`` seconds in case its holder dies. Scoped to the database so
    that test databases do not collide."""
    key = f"lock:{name}:{connection.settings_dict.get('NAME')}"
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    while not (acquired := cache.add(key, token, timeout=int(ttl) + 1)) and time.monotonic() < deadline:
        time.sleep(0.5)
    try:
        yield acquired
    finally:
        if acquired and cache.get(key) == token:
            cache.delete(key)
