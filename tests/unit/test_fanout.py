"""common.fanout: results in order, never more than the bound at once."""
import threading
import time

from controlplane.common.fanout import fan_out


def test_results_keep_the_order_of_the_items_and_the_bound_holds():
    running, peak, lock = 0, 0, threading.Lock()

    def slow_square(n):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return n * n

    assert fan_out(slow_square, list(range(12)), concurrency=3) == [n * n for n in range(12)]
    assert peak == 3


def test_no_items_start_no_threads():
    before = threading.active_count()
    assert fan_out(lambda item: 1 / 0, [], concurrency=8) == []
    assert threading.active_count() == before
