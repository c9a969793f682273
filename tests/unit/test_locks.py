"""The lock every driver shares: across processes (forked children here, as the demo's worker
processes are), with Redis and without it (a file lock), and released when its holder dies."""
import os
import threading

import pytest

from controlplane.common.locks import cache_lock

LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
GOT, NOT_GOT = 0, 3


class Child:
    """A process forked now, before the parent takes any lock (as the demo's worker processes are
    forked at start), that runs ``fn`` when told to; ``run()`` gives its exit code."""

    def __init__(self, fn):
        self.go_read, self.go_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never back into pytest
            code = 1
            try:
                os.read(self.go_read, 1)
                code = fn()
            finally:
                os._exit(code)

    def run(self) -> int:
        os.write(self.go_write, b"x")
        _, status = os.waitpid(self.pid, 0)
        os.close(self.go_read)
        os.close(self.go_write)
        return os.waitstatus_to_exitcode(status)


def in_child(fn) -> int:
    return Child(fn).run()


def try_lock() -> int:
    with cache_lock("drive-42", ttl=5) as held:
        return GOT if held else NOT_GOT


@pytest.fixture(params=["redis", "file"])
def mode(request, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    if request.param == "file":
        settings.CACHES = LOCMEM  # each process's own memory: the lock must not rely on it
    return request.param


def test_another_process_cannot_take_a_held_lock_and_can_once_it_is_free(mode):
    started_before = Child(try_lock)
    with cache_lock("drive-42", ttl=5) as held:
        assert held
        assert started_before.run() == NOT_GOT
        assert in_child(try_lock) == NOT_GOT
    assert in_child(try_lock) == GOT


def test_another_thread_cannot_take_it_either(mode):
    seen = []
    with cache_lock("drive-42", ttl=5) as held:
        assert held
        thread = threading.Thread(target=lambda: seen.append(try_lock()))
        thread.start()
        thread.join()
    assert seen == [NOT_GOT]


def test_without_redis_a_holder_that_dies_frees_the_lock_at_once(settings, tmp_path):
    settings.VAR_DIR, settings.CACHES = tmp_path, LOCMEM

    def die_holding() -> int:
        with cache_lock("drive-42", ttl=600) as held:
            os._exit(GOT if held else NOT_GOT)  # a SIGKILL-like end: no release

    assert in_child(die_holding) == GOT
    with cache_lock("drive-42", ttl=600) as held:
        assert held  # not after the ttl: the kernel dropped it with the process
    assert list(tmp_path.joinpath("locks").iterdir())  # under SWITCHYARD_VAR_DIR


def test_waiting_gets_it_when_the_holder_lets_go(mode):
    holding, release = threading.Event(), threading.Event()

    def hold():
        with cache_lock("drive-42", ttl=5) as held:
            assert held
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    try:
        with cache_lock("drive-42", ttl=5, wait=0) as first:
            assert not first
        threading.Timer(0.3, release.set).start()
        with cache_lock("drive-42", ttl=5, wait=5) as later:
            assert later
    finally:
        release.set()
        holder.join()
