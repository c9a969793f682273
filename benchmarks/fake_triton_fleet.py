"""A FAKE Triton fleet for the metrics benchmark: one asyncio process, one listening port per
simulated server, each answering ``GET /metrics`` with a Triton-like Prometheus page.

Not a Triton. It serves only ``/metrics`` (anything else is a 404), so that Prometheus can scrape
N "servers" from one process on one machine. The page has the series Triton 2.5x exports with
``--metrics-config summary_latencies=true`` on a GPU host, per model and version:
``nv_inference_request_success``, ``nv_inference_request_failure`` (by reason),
``nv_inference_count``, ``nv_inference_exec_count``, the cumulative ``*_duration_us`` counters
(request, queue, compute input/infer/output), ``nv_inference_pending_request_count``, the
``nv_inference_request_summary_us`` and ``nv_inference_queue_summary_us`` summaries with their
quantiles, then ``nv_cpu_*`` and per-GPU ``nv_gpu_*`` and ``nv_energy_consumption``. Counters grow
with time at a per-server, per-model rate, so rates are steady and realistic.

Run: ``python -m benchmarks.fake_triton_fleet --ports 20000-20999`` (or ``--count N``, free
ports chosen by the kernel), which prints one JSON line ``{"ports": [...]}`` on stdout when
listening (and writes it to ``--ports-file`` if given). The options, the listening sockets and
that announcement are shared with the simulated Triton fleet of ``benchmarks/triton_simulator.py``,
which also serves this page as its ``/metrics``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import sys
import time
from pathlib import Path

MODELS = (("fraud-scorer", ("3", "4")), ("resnet50", ("1", "2")), ("bert-small", ("7",)))
FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")
QUANTILES = ("0.5", "0.9", "0.95", "0.99")
GPUS_PER_SERVER = 1

_HELP = {
    "nv_inference_request_success": ("counter", "Number of successful inference requests, all batch sizes"),
    "nv_inference_request_failure": ("counter", "Number of failed inference requests, all batch sizes"),
    "nv_inference_count": ("counter", "Number of inferences performed (does not include cached requests)"),
    "nv_inference_exec_count": ("counter", "Number of model executions performed (does not include cached requests)"),
    "nv_inference_request_duration_us": ("counter", "Cumulative inference request duration in microseconds (includes cached requests)"),
    "nv_inference_queue_duration_us": ("counter", "Cumulative inference queuing duration in microseconds (includes cached requests)"),
    "nv_inference_compute_input_duration_us": ("counter", "Cumulative compute input duration in microseconds (does not include cached requests)"),
    "nv_inference_compute_infer_duration_us": ("counter", "Cumulative compute inference duration in microseconds (does not include cached requests)"),
    "nv_inference_compute_output_duration_us": ("counter", "Cumulative inference compute output duration in microseconds (does not include cached requests)"),
    "nv_inference_pending_request_count": ("gauge", "Instantaneous number of pending requests awaiting execution per-model."),
    "nv_inference_request_summary_us": ("summary", "Summary of inference request duration in microseconds (includes cached requests)"),
    "nv_inference_queue_summary_us": ("summary", "Summary of inference queue duration in microseconds (includes cached requests)"),
}


def _head(name: str) -> str:
    kind, text = _HELP[name]
    return f"# HELP {name} {text}\n# TYPE {name} {kind}\n"


class FakeServer:
    """One simulated Triton: its page is a function of the time since the fleet started."""

    def __init__(self, index: int, started: float):
        self.index = index
        self.started = started
        self.rps = {}  # (model, version) -> requests per second
        for m, (model, versions) in enumerate(MODELS):
            for v, version in enumerate(versions):
                self.rps[(model, version)] = 5.0 + (index * 7 + m * 13 + v * 3) % 40
        self.gpu_memory_used: float | None = None  # bytes in use on every GPU; None: a made-up figure
        self.gpu = [f"GPU-{index:08x}-{g:04x}-4000-8000-{index * 31 + g:012x}" for g in range(GPUS_PER_SERVER)]

    def page(self, now: float) -> bytes:
        t = now - self.started + 600.0  # as if up for ten minutes when the fleet started
        out = []
        rows = []
        for (model, version), rps in self.rps.items():
            lab = f'model="{model}",version="{version}"'
            requests = int(rps * t)
            failures = requests // 997
            batch = 1 + (self.index + len(model)) % 8
            latency_us = 800 + (self.index * 37 + len(model) * 101) % 4000
            queue_us = latency_us // 5
            rows.append((lab, requests, failures, batch, latency_us, queue_us))
        out.append(_head("nv_inference_request_success"))
        out += [f"nv_inference_request_success{{{lab}}} {r - f}\n" for lab, r, f, *_ in rows]
        out.append(_head("nv_inference_request_failure"))
        for lab, r, f, *_ in rows:
            out += [f'nv_inference_request_failure{{{lab},reason="{reason}"}} {f if reason == "BACKEND" else 0}\n'
                    for reason in FAILURE_REASONS]
        out.append(_head("nv_inference_count"))
        out += [f"nv_inference_count{{{lab}}} {r * b}\n" for lab, r, f, b, *_ in rows]
        out.append(_head("nv_inference_exec_count"))
        out += [f"nv_inference_exec_count{{{lab}}} {r}\n" for lab, r, *_ in rows]
        out.append(_head("nv_inference_request_duration_us"))
        out += [f"nv_inference_request_duration_us{{{lab}}} {r * lat}\n" for lab, r, f, b, lat, q in rows]
        out.append(_head("nv_inference_queue_duration_us"))
        out += [f"nv_inference_queue_duration_us{{{lab}}} {r * q}\n" for lab, r, f, b, lat, q in rows]
        for name, share in (("input", 0.05), ("infer", 0.6), ("output", 0.05)):
            metric = f"nv_inference_compute_{name}_duration_us"
            out.append(_head(metric))
            out += [f"{metric}{{{lab}}} {int(r * lat * share)}\n" for lab, r, f, b, lat, q in rows]
        out.append(_head("nv_inference_pending_request_count"))
        out += [f"nv_inference_pending_request_count{{{lab}}} {int(now) % 3}\n" for lab, *_ in rows]
        wobble = 1.0 + 0.1 * ((int(now) // 10 + self.index) % 5)
        for metric, pick in (("nv_inference_request_summary_us", 4), ("nv_inference_queue_summary_us", 5)):
            out.append(_head(metric))
            for row in rows:
                lab, r, us = row[0], row[1], row[pick]
                out.append(f"{metric}_count{{{lab}}} {r}\n{metric}_sum{{{lab}}} {r * us}\n")
                out += [f'{metric}{{{lab},quantile="{q}"}} {us * (1 + i * 0.4) * wobble:.1f}\n' for i, q in enumerate(QUANTILES)]
        cpu = 0.2 + 0.05 * ((int(now) // 10 + self.index) % 7)
        out.append("# HELP nv_cpu_utilization CPU utilization rate [0.0 - 1.0]\n# TYPE nv_cpu_utilization gauge\n"
                   f"nv_cpu_utilization {cpu:.4f}\n"
                   "# HELP nv_cpu_memory_total_bytes CPU total memory (RAM), in bytes\n# TYPE nv_cpu_memory_total_bytes gauge\n"
                   "nv_cpu_memory_total_bytes 540000000000\n"
                   "# HELP nv_cpu_memory_used_bytes CPU used memory (RAM), in bytes\n# TYPE nv_cpu_memory_used_bytes gauge\n"
                   f"nv_cpu_memory_used_bytes {31000000000 + self.index * 1000}\n")
        gpu_rows = [(f'gpu_uuid="{uuid}"', g) for g, uuid in enumerate(self.gpu)]
        for metric, kind, text, value in (
            ("nv_gpu_utilization", "gauge", "GPU utilization rate [0.0 - 1.0)", lambda g: f"{cpu + 0.1:.4f}"),
            ("nv_gpu_memory_total_bytes", "gauge", "GPU total memory, in bytes", lambda g: "85899345920"),
            ("nv_gpu_memory_used_bytes", "gauge", "GPU used memory, in bytes", 
             lambda g: str(20000000000 + g * 1000) if self.gpu_memory_used is None else str(int(self.gpu_memory_used))),
            ("nv_gpu_power_usage", "gauge", "GPU power usage in watts", lambda g: f"{150 + cpu * 100:.3f}"),
            ("nv_gpu_power_limit", "gauge", "GPU power management limit in watts", lambda g: "400"),
            ("nv_energy_consumption", "counter", "GPU energy consumption in joules since the Triton Server started",
             lambda g: f"{t * 200:.3f}"),
        ):
            out.append(f"# HELP {metric} {text}\n# TYPE {metric} {kind}\n")
            out += [f"{metric}{{{lab}}} {value(g)}\n" for lab, g in gpu_rows]
        return "".join(out).encode()


class Fleet:
    def __init__(self, ports: list[int]):
        self.started = time.time()
        self.servers = {port: FakeServer(i, self.started) for i, port in enumerate(ports)}
        self.scrapes = 0

    async def handle(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server = self.servers[port]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].split(b" ")
                path = line[1] if len(line) > 1 else b""
                if path.split(b"?")[0] == b"/metrics":
                    body = server.page(time.time())
                    status = b"200 OK"
                    self.scrapes += 1
                else:
                    body, status = b"not a Triton: this fake serves /metrics only\n", b"404 Not Found"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()


def raise_fd_limit(wanted: int) -> tuple[int, int]:
    """Raise the soft open-files limit toward `wanted` (at most the hard limit); (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# -- a port per simulated server: the plumbing this fleet shares with benchmarks/triton_simulator.py


def parse_ports(spec: str) -> list[int]:
    """Ports from "20000-20999" or "20001,20007,..." (ranges and single ports, comma-separated)."""
    ports = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        ports += range(int(first), int(last or first) + 1)
    return ports


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    """--count/--servers, --ports, --host and --ports-file, read back by `fleet_listeners`."""
    parser.add_argument("--count", "--servers", dest="count", type=int, help="simulated servers on free ports")
    parser.add_argument("--ports", help="ports instead: a range such as 20000-20999, or a comma-separated list")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ports-file", help="also write {\"ports\": [...]} to this file once listening")


def fleet_listeners(args: argparse.Namespace) -> list[socket.socket]:
    """One bound socket per simulated server, from `add_fleet_arguments`' options.

    Without --ports each socket binds port 0, so the kernel picks a free port that nobody can
    take in between. Exits (status 2) when the open-files limit cannot cover the fleet.
    """
    ports = parse_ports(args.ports) if args.ports else [0] * (args.count or 10)
    soft, hard = raise_fd_limit(3 * len(ports) + 256)  # a listener and a connection per server, and slack
    if soft < 2 * len(ports) + 64:
        print(f"open-files limit {soft} (hard {hard}) is too low for {len(ports)} servers", file=sys.stderr)
        sys.exit(2)
    socks = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, port))
        socks.append(sock)
    return socks


def announce(socks: list[socket.socket], ports_file: str | None, **extra) -> list[int]:
    """Say the fleet is listening: one JSON line {"ports": [...], ...} on stdout, and the same in
    `ports_file` (written whole, then renamed, so a reader never sees half of it)."""
    ports = [sock.getsockname()[1] for sock in socks]
    line = json.dumps({"ports": ports, **extra})
    if ports_file:
        partial = Path(f"{ports_file}.partial")
        partial.write_text(line + "\n")
        partial.replace(ports_file)
    print(line, flush=True)
    return ports


async def serve(socks: list[socket.socket], ports_file: str | None = None) -> None:
    ports = [sock.getsockname()[1] for sock in socks]
    fleet = Fleet(ports)
    listeners = [
        await asyncio.start_server(lambda r, w, p=port: fleet.handle(p, r, w), sock=sock, backlog=64)
        for port, sock in zip(ports, socks)
    ]
    announce(socks, ports_file, fake="triton metrics pages")
    await asyncio.gather(*(s.serve_forever() for s in listeners))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fake_triton_fleet", description=__doc__.split("\n\n")[0])
    add_fleet_arguments(parser)
    args = parser.parse_args(argv)
    socks = fleet_listeners(args)
    try:
        asyncio.run(serve(socks, args.ports_file))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
