"""Everything ``make demo`` does before it starts the servers, in one process: migrate, collect the
static files, seed the demo.

Each management command run on its own pays for Python, Django and the project's imports (pandas,
pyarrow, DRF, Celery) again, a few seconds apiece on a busy machine; one process pays once. The static
files are collected again only when a source file changed since the last collection (whitenoise's
compressed manifest storage otherwise hashes and compresses some 700 files at every start). Each step
is still its own command (``migrate``, ``collectstatic``, ``seed_demo``), so ``make migrate`` and
``make seed`` work as before.
"""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand

from marketplace.management.demo import static_fingerprint_path, static_sources_fingerprint


class Command(BaseCommand):
    help = (
        "Set the demo up in one process: migrate, collectstatic (only when a static source changed) and "
        "seed_demo. Safe to re-run."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--force-collectstatic",
            action="store_true",
            help="Collect the static files even when no source changed.",
        )

    def handle(self, *args, **options) -> None:
        # migrate writes "Applying ..." and "OK" on one line in two writes, so it gets the real stdout,
        # not this command's wrapper (which would end each write with a newline).
        call_command("migrate", interactive=False, verbosity=options["verbosity"])
        self.collect_static(force=options["force_collectstatic"])
        call_command("seed_demo", stdout=self.stdout, stderr=self.stderr)

    def collect_static(self, *, force: bool) -> None:
        """Run collectstatic unless the sources are those of the last collection (or ``force``)."""
        marker = static_fingerprint_path()
        fingerprint = static_sources_fingerprint()
        if not force and marker.is_file() and marker.read_text().strip() == fingerprint:
            self.stdout.write("Static files unchanged since the last collection; not collecting them again.")
            return
        # The old marker goes first, so that a collection failing half-way leaves none and is redone.
        marker.unlink(missing_ok=True)
        call_command("collectstatic", interactive=False, verbosity=0)
        marker.write_text(fingerprint + "\n")
        self.stdout.write("Collected the static files.")
