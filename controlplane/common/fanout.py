"""Parallel fan-out of blocking I/O (Triton calls) across a bounded pool of threads."""
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor


def fan_out(fn: Callable, items: Sequence, *, concurrency: int, name: str = "fan-out") -> list:
    """``[fn(item) for item in items]``, at most ``concurrency`` at a time, results in order.

    No thread pool for no items. ``fn`` must not touch the database: each thread would open its own
    connection, outside the caller's transaction.
    """
    if not items:
        return []
    workers = max(1, min(concurrency, len(items)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        return list(pool.map(fn, items))
