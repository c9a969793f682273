"""``python -m benchmarks [--size tiny|small|full] [--only NAME ...]`` runs the benchmarks."""
import argparse
import sys

from benchmarks import (
    api_latency,
    audit_badge,
    gateway_throughput,
    metrics_pipeline,
    rollout,
)

BENCHMARKS = {
    "api_latency": api_latency.main,
    "audit_badge": audit_badge.main,
    "gateway_throughput": gateway_throughput.main,
    "metrics_pipeline": metrics_pipeline.main,
    "rollout": rollout.main,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--size",
        choices=sorted(api_latency.SIZES),
        default="full",
        help="data volume: full is the target of the design (default), small a quick look, tiny the smoke-test size",
    )
    parser.add_argument("--rounds", type=int, default=None, help="timed requests per page and phase; for gateway_throughput, rounds of wrk runs; for rollout, "
                        "rounds of each real-fleet part (default: per size)")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    args = parser.parse_args(argv)

    status = 0
    for name in args.only or list(BENCHMARKS):
        print(f"== {name} (size {args.size})", flush=True)
        status |= BENCHMARKS[name](size=args.size, rounds=args.rounds)
    return status


if __name__ == "__main__":
    sys.exit(main())
