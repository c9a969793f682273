"""Write Prometheus's configuration for Switchyard: the scrape config and the recording rules.

    manage.py prometheus_config --switchyard-url https://switchyard.example.com            # config to stdout
    manage.py prometheus_config --switchyard-url https://switchyard.example.com --rules    # rules to stdout
    manage.py prometheus_config --switchyard-url http://web:8000 --out /etc/prometheus/sy  # prometheus.yml, rules.yml

With --out, the directory gets prometheus.yml and rules.yml, and switchyard.token (mode 600) when
a token is given (--token or SWITCHYARD_PROMETHEUS_TOKEN); the config reads the token from there.
Operators who run their own Prometheus paste in the two scrape jobs and add rules.yml.
"""
import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from controlplane.metrics.config import (
    CONFIG_FILE,
    RULES_FILE,
    TOKEN_FILE,
    render_files,
    write_files,
)


class Command(BaseCommand):
    help = "Write Prometheus's scrape config (http_sd discovery of Switchyard's fleet) and recording rules."

    def add_arguments(self, parser):
        parser.add_argument("--switchyard-url", required=True,
                            help="Switchyard's web URL as Prometheus reaches it, e.g. http://web:8000")
        parser.add_argument("--out", help="directory for prometheus.yml, rules.yml (and the token); default: the config to stdout")
        parser.add_argument("--rules", action="store_true", help="without --out: print the rules file, not the config")
        parser.add_argument("--token", default=os.environ.get("SWITCHYARD_PROMETHEUS_TOKEN", ""),
                            help="a read token of a platform admin (default $SWITCHYARD_PROMETHEUS_TOKEN); written to "
                                 "switchyard.token beside the config")
        parser.add_argument("--credentials-file", default=TOKEN_FILE,
                            help="where Prometheus reads the token (relative: to the config file)")
        parser.add_argument("--window", default="1m", help="rate window of the recording rules (default 1m)")
        parser.add_argument("--gateway-scrape-seconds", type=float, default=None,
                            help="default $SWITCHYARD_PROMETHEUS_GATEWAY_SCRAPE_SECONDS")
        parser.add_argument("--triton-scrape-seconds", type=float, default=None,
                            help="default $SWITCHYARD_PROMETHEUS_TRITON_SCRAPE_SECONDS")
        parser.add_argument("--refresh-seconds", type=float, default=5.0, help="how often Prometheus re-reads the targets")

    def handle(self, *args, switchyard_url, out, rules, token, credentials_file, window, gateway_scrape_seconds,
               triton_scrape_seconds, refresh_seconds, **options):
        try:
            files = render_files(switchyard_url=switchyard_url, credentials_file=credentials_file, window=window,
                                 gateway_scrape_s=gateway_scrape_seconds, triton_scrape_s=triton_scrape_seconds,
                                 refresh_s=refresh_seconds)
        except ValueError as e:
            raise CommandError(str(e)) from None
        if not out:
            self.stdout.write(files[RULES_FILE if rules else CONFIG_FILE], ending="")
            return
        directory = Path(out)
        write_files(directory, files, token=token, credentials_file=credentials_file)
        if not token and not (directory / credentials_file).exists():
            self.stderr.write(f"No token given: put a read token of a platform admin in {directory / credentials_file}.")
        self.stdout.write(f"Wrote {', '.join(sorted(files))} to {directory}.")

