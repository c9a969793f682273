"""`switchyard`: the command line. Each subcommand imports only what it needs, so that
`switchyard gateway` never loads Django."""
from __future__ import annotations

import sys

USAGE = """usage: switchyard <command> [options]

commands:
  gateway     run the inference gateway (Triton HTTP/REST v2 data plane)
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "gateway":
        from gateway.server import main as gateway_main

        return gateway_main(rest)
    print(f"switchyard: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
