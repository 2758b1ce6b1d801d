"""manage.py export_catalogue --project SLUG --out FILE.csv: the dashboard's catalogue download, as a file.

The same rows as the dashboard's CSV (``dashboard.selectors.catalogue_export_lines``), streamed to the
file chunk by chunk; the vote-count columns make it a training catalogue for
``python -m classifier train --catalog FILE.csv --images MEDIA_ROOT``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from django.core.management.base import CommandError

from zooplatform.core.management.base import DataCommand

from zooplatform.core.exceptions import ApplicationError
from zooplatform.dashboard.selectors import catalogue_export_lines, project_get
from zooplatform.galaxies.services import DEFAULT_PROJECT_SLUG


class Command(DataCommand):
    help = "Export a project's catalogue (votes, posteriors, predictions, image paths) as CSV."

    def add_arguments(self, parser):
        parser.add_argument("--project", default=DEFAULT_PROJECT_SLUG, help="project slug (default: %(default)s)")
        parser.add_argument("--out", required=True, help="CSV file to write, or - for standard output")

    def handle(self, *args, project, out, **options):
        try:
            project_obj = project_get(slug=project)
            lines = catalogue_export_lines(project=project_obj)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        if out == "-":
            n = self._write(lines, sys.stdout)
            self.stderr.write(f"{n} subjects exported")
            return
        path = Path(out)
        tmp = path.with_name(f".{path.name}.part")
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                n = self._write(lines, fh)
            os.replace(tmp, path)  # a reader never sees half a catalogue
        finally:
            tmp.unlink(missing_ok=True)
        self.stdout.write(self.style.SUCCESS(f"{n} subjects of {project_obj.slug!r} written to {path}"))

    @staticmethod
    def _write(lines, fh) -> int:
        n = -1  # the header is not a subject
        for line in lines:
            fh.write(line)
            n += 1
        return max(n, 0)
