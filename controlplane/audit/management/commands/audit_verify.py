import time

from django.core.management.base import BaseCommand, CommandError

from controlplane.audit.context import Actor
from controlplane.audit.models import Source
from controlplane.audit.selectors import audit_chain_verify_tail
from controlplane.audit.services import audit_chain_verify_full


class Command(BaseCommand):
    help = ("Re-hash the whole audit chain, trusting no checkpoint, and report the first broken link; the outcome "
            "is saved as a checkpoint and an audit event. Exits 1 if the chain is broken.")

    def add_arguments(self, parser):
        parser.add_argument("--tail", action="store_true",
                            help="only the quick check the Audit page runs: the events after the newest checkpoint")

    def handle(self, *args, tail=False, **options):
        started = time.perf_counter()
        report = audit_chain_verify_tail() if tail else audit_chain_verify_full(actor=Actor.system(Source.CLI))
        took = time.perf_counter() - started
        if not report.ok:
            raise CommandError(
                f"Audit chain BROKEN at event {report.first_broken_id} ({report.checked} events checked): {report.problem}"
            )
        if tail:
            pending = "" if report.complete else f"; events after it, up to {report.head_id}, are pending"
            since = f"the checkpoint at event {report.start_after}" if report.start_after else "the start of the chain"
            self.stdout.write(self.style.SUCCESS(
                f"Audit chain verified to event {report.verified_to}: {report.checked} events re-hashed from {since} "
                f"in {took:.1f} s{pending}."))
            return
        self.stdout.write(self.style.SUCCESS(f"Audit chain verified: {report.checked} events in {took:.1f} s."))
