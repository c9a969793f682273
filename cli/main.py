"""`switchyard`: the command line. Each subcommand imports only what it needs, so that
`switchyard gateway` never loads Django and the deployment commands use the standard library
only (they talk to the REST API)."""
from __future__ import annotations

import sys

USAGE = """usage: switchyard <command> [options]

commands:
  gateway     run the inference gateway (Triton HTTP/REST v2 data plane)
  deploy      start a deployment of a version to an endpoint (--wait follows it; --plan only plans)
  status      show a deployment (--wait follows it until it ends)
  promote     skip the remaining steps: 100% to green
  rollback    traffic back to blue (after success: the fast rollback)
  abort       stop a deployment; it ends aborted
  approve     approve the promotion of a deployment awaiting approval
  retry       start a failed deployment (or a failed rollback) again
  resume      judge the gates again after a pause
  cancel      cancel a scheduled deployment

`switchyard <command> --help` describes a command. The deployment commands read SWITCHYARD_URL
and SWITCHYARD_TOKEN, and exit 0 on success, 2 when the deployment rolled back, 3 on a failure,
a timeout or a usage error, and 4 when the server refused (4xx).
"""

EXIT_USAGE = 3  # 2 means "rolled back" to the deployment commands; CI must not confuse them


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="", file=sys.stdout if argv else sys.stderr)
        return 0 if argv else EXIT_USAGE
    command, rest = argv[0], argv[1:]
    if command == "gateway":
        from gateway.server import main as gateway_main

        return gateway_main(rest)
    from cli.deploy import COMMANDS

    if command in COMMANDS:
        from cli.deploy import main as deploy_main

        return deploy_main(argv)
    print(f"switchyard: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
