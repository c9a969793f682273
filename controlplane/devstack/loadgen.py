"""The demo's background traffic: steady Triton inference requests through the gateway.

`make demo` runs this as its own process so that the charts, the gates and a rollout have real
traffic to show within a minute. Plain HTTP/JSON (Triton's v2 protocol) on one keep-alive
connection, paced to a fixed rate, each request from one of a few hundred users (the endpoint is
sticky on X-User-Id, so a canary's share of users matches its traffic %). It never gives up: while
the gateway is down or answers errors it counts them, backs off a little and keeps going, and
every `report_s` it logs one line of what it got (answers per version, errors).

    python -m controlplane.devstack.loadgen --url http://127.0.0.1:8080 --endpoint vision.fraud-scorer

The rate comes from --rate, else SWITCHYARD_DEMO_LOAD_RPS, else 10 requests per second.
Plain Python with no Django imports, like the rest of devstack.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_RATE = 10.0
RATE_ENV = "SWITCHYARD_DEMO_LOAD_RPS"
USERS = 500
MAX_BACKOFF_S = 2.0


def infer_body(rng: random.Random) -> bytes:
    """One row of the demo model's INPUT0 (FP32, 4 values)."""
    row = [round(rng.uniform(0, 100), 2) for _ in range(4)]
    return json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": row}]}).encode()


def answered_version(body: bytes) -> int | None:
    """The VERSION output of an answer (the demo models name their version in it)."""
    try:
        outputs = json.loads(body)["outputs"]
        return int(next(o for o in outputs if o["name"] == "VERSION")["data"][0])
    except (ValueError, KeyError, TypeError, StopIteration, IndexError):
        return None


@dataclass
class Tally:
    """What the gateway answered: `v2`, `v3`, ... per version; `http 500`, `no answer`, ... for errors."""

    counts: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str) -> None:
        with self.lock:
            self.counts[outcome] += 1

    def take(self) -> Counter:
        """The counts since the last take()."""
        with self.lock:
            counts, self.counts = self.counts, Counter()
        return counts


class LoadGenerator:
    def __init__(self, url: str, endpoint: str, *, rate: float = DEFAULT_RATE, users: int = USERS,
                 timeout: float = 5.0, seed: int | None = None):
        if rate <= 0:
            raise ValueError("rate must be above 0")
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{url!r}: give the gateway as http://host:port")
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = f"/v2/models/{endpoint}/infer"
        self.rate, self.users, self.timeout = rate, users, timeout
        self.rng = random.Random(seed)
        self.tally = Tally()
        self.total = Tally()  # since the start, never taken
        self._conn: http.client.HTTPConnection | None = None
        self._unanswered_in_a_row = 0

    def send_one(self) -> str:
        """One request; its outcome as a tally key. Never raises for the gateway's sake."""
        user = f"user-{self.rng.randrange(self.users)}"
        body = infer_body(self.rng)
        try:
            try:
                status, answer = self._post(body, user)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The gateway may close an idle keep-alive connection as we reuse it: once more, afresh.
                self._close()
                status, answer = self._post(body, user)
            if status != 200:
                outcome = f"http {status}"
            else:
                version = answered_version(answer)
                outcome = f"v{version}" if version is not None else "bad answer"
        except (OSError, http.client.HTTPException):
            # Refused, reset or timed out: the gateway is restarting or gone. Reconnect next time.
            self._close()
            outcome = "no answer"
        self.tally.add(outcome)
        self.total.add(outcome)
        # Only silence backs off: an error answer is quick, and a bad green's errors are the point.
        self._unanswered_in_a_row = self._unanswered_in_a_row + 1 if outcome == "no answer" else 0
        return outcome

    def _post(self, body: bytes, user: str) -> tuple[int, bytes]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self._conn.request("POST", self.path, body=body, headers={"Content-Type": "application/json", "X-User-Id": user})
        response = self._conn.getresponse()
        answer = response.read()
        if response.will_close:
            self._close()
        return response.status, answer

    def backoff_s(self) -> float:
        """How long to hold off after the last request: nothing while answers come, up to 2 s while
        the gateway gives none (no tight loop against a port nobody listens on)."""
        if self._unanswered_in_a_row < 3:
            return 0.0
        return min(MAX_BACKOFF_S, 0.1 * 2 ** min(self._unanswered_in_a_row - 3, 5))

    def run(self, stop: threading.Event, *, report_s: float = 0, report=print) -> None:
        """Send at `rate` until `stop` is set; every `report_s` seconds (0: never) report a line."""
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        next_report = next_at + report_s if report_s else float("inf")
        while not stop.is_set():
            self.send_one()
            now = time.monotonic()
            if now >= next_report:
                report(self.summary(self.tally.take(), report_s))
                next_report = now + report_s
            pause = self.backoff_s()
            if pause:
                next_at = now + pause
            else:
                # Keep the pace; after a stall, start afresh rather than burst to catch up.
                next_at = max(next_at + interval, now - interval)
            stop.wait(max(0.0, next_at - time.monotonic()))
        self._close()

    @staticmethod
    def summary(counts: Counter, seconds: float) -> str:
        total = sum(counts.values())
        parts = ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "nothing sent"
        return f"{time.strftime('%H:%M:%S')} last {seconds:g} s: {total} requests ({parts})"

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="the gateway, http://host:port")
    p.add_argument("--endpoint", required=True, help="the endpoint's public name, such as vision.fraud-scorer")
    p.add_argument("--rate", type=float, default=None,
                   help=f"requests per second (default ${RATE_ENV}, else {DEFAULT_RATE:g})")
    p.add_argument("--report-seconds", type=float, default=30.0, help="log a summary this often (0: never)")
    args = p.parse_args(argv)
    rate = args.rate if args.rate is not None else float(os.environ.get(RATE_ENV) or DEFAULT_RATE)
    generator = LoadGenerator(args.url, args.endpoint, rate=rate)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"sending {rate:g} requests/s to {args.url}{generator.path}", flush=True)
    generator.run(stop, report_s=args.report_seconds, report=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
