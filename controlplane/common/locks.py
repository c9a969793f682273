"""A best-effort lock shared by every process that drives Switchyard, scoped to this database.

With Redis (``REDIS_URL``, production and the tests) it is a key in the shared cache that expires
after ``ttl`` in case its holder dies. Without Redis the cache is each process's own memory, which
locks nothing across the demo's worker processes; the lock is then a file lock (``flock``) under
``SWITCHYARD_VAR_DIR``, which the kernel releases when its holder dies. Both lock out other
threads of the same process too.
"""
import fcntl
import hashlib
import os
import time
import uuid
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import cache
from django.db import connection

POLL_S = 0.5


def _shared_cache() -> bool:
    return not settings.CACHES["default"]["BACKEND"].endswith("LocMemCache")


@contextmanager
def cache_lock(name: str, ttl: float, wait: float = 0.0):
    """Yields True if this caller holds ``name`` now, after waiting up to ``wait`` seconds for it.
    Scoped to the database so that test databases do not collide."""
    key = f"lock:{name}:{connection.settings_dict.get('NAME')}"
    lock = _cache_lock if _shared_cache() else _file_lock
    with lock(key, ttl, wait) as acquired:
        yield acquired


@contextmanager
def _cache_lock(key: str, ttl: float, wait: float):
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    while not (acquired := cache.add(key, token, timeout=int(ttl) + 1)) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    try:
        yield acquired
    finally:
        if acquired and cache.get(key) == token:
            cache.delete(key)


@contextmanager
def _file_lock(key: str, ttl: float, wait: float):
    """``ttl`` is not needed: the kernel drops the lock of a process that dies."""
    folder = settings.VAR_DIR / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                acquired = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    acquired = False
                    break
                time.sleep(POLL_S)
        try:
            yield acquired
        finally:
            if acquired:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
