"""The demo's broker without Redis: kombu's filesystem transport, writing each message atomically.
A reader process takes messages while this one puts them as fast as it can; every message must
arrive whole. (With kombu's own transport the reader now and then gets an empty file, about one
in a few thousand here, and a Celery worker that gets one stops.)"""
import multiprocessing
from queue import Empty

from kombu import Connection

TRANSPORT = "controlplane.common.filesystem_broker:Transport"
MESSAGES = 3000


def connection(folder, transport=TRANSPORT):
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "processed_folder": str(folder / "done"),
               "control_folder": str(folder / "control"), "store_processed": False}
    (folder / "done").mkdir(exist_ok=True)
    (folder / "control").mkdir(exist_ok=True)
    return Connection("filesystem://", transport=transport, transport_options=options)


def _read(folder, transport, out) -> None:
    channel = connection(folder, transport).default_channel
    received, failures, idle = [], 0, 0
    while len(received) + failures < MESSAGES and idle < 50_000:
        try:
            received.append(channel._get("jobs")["n"])
            idle = 0
        except Empty:
            idle += 1
        except ValueError:  # an empty or partial file
            failures += 1
    out.put((sorted(received), failures))


def race(folder, transport=TRANSPORT) -> tuple[list[int], int]:
    """Put MESSAGES messages while another process takes them: what it read, and how many failed."""
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    reader = context.Process(target=_read, args=(folder, transport, out))
    reader.start()
    channel = connection(folder, transport).default_channel
    for n in range(MESSAGES):
        channel._put("jobs", {"n": n, "body": "x" * 2000})
    result = out.get(timeout=120)
    reader.join(10)
    return result


def test_every_message_arrives_whole_while_another_process_polls(tmp_path):
    received, failures = race(tmp_path)
    assert failures == 0
    assert received == list(range(MESSAGES))
    assert not list(tmp_path.glob("writing-*"))  # nothing left half-written


def test_without_redis_the_settings_pick_it(tmp_path):
    """Settings read in a fresh interpreter with no broker and no Redis configured, as the demo runs."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    env.update(DJANGO_SETTINGS_MODULE="controlplane.settings", SWITCHYARD_DEBUG="true", SWITCHYARD_VAR_DIR=str(tmp_path))
    code = "from django.conf import settings; print(settings.CELERY_BROKER_URL, settings.CELERY_BROKER_TRANSPORT)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["filesystem://", TRANSPORT]
