import time

from django.core.management.base import BaseCommand, CommandError

from controlplane.audit.selectors import audit_chain_verify


class Command(BaseCommand):
    help = "Re-hash the audit chain and report the first broken link. Exits 1 if the chain is broken."

    def handle(self, *args, **options):
        started = time.perf_counter()
        report = audit_chain_verify()
        took = time.perf_counter() - started
        if not report.ok:
            raise CommandError(
                f"Audit chain BROKEN at event {report.first_broken_id} ({report.checked} events checked): {report.problem}"
            )
        self.stdout.write(self.style.SUCCESS(f"Audit chain verified: {report.checked} events in {took:.1f} s."))
