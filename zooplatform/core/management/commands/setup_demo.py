"""manage.py setup_demo: everything `make demo` needs before the platform starts, idempotently.

Creates the project and its built-in workflows, the demo galaxies (HUDF cutouts, synthetic GalSim
galaxies with known truth, and the real DECaLS ring sample when ../shared/realdata is present) and
the scientist account, whose password is printed and kept in var/scientist-password.txt. A second
run finds all of it and only prints how to log in.
"""
from __future__ import annotations

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from zooplatform.galaxies.models import Subject
from zooplatform.galaxies.services import project_bootstrap

REALDATA_RINGS = settings.BASE_DIR.parent / "shared" / "realdata" / "zoobot"


class Command(BaseCommand):
    help = "Create the demo project, galaxies and scientist account if missing (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--hudf", type=int, default=60, help="HUDF cutouts to make on the first run")
        parser.add_argument("--synthetic", type=int, default=240, help="synthetic galaxies to make on the first run")
        parser.add_argument("--username", default="scientist")

    def handle(self, *args, hudf, synthetic, username, **options):
        project = project_bootstrap()
        if not Subject.objects.filter(project=project).exists():
            self.stdout.write("Making the demo galaxies (first run only)...")
            call_command("make_demo_subjects", hudf=hudf, synthetic=synthetic, project=project.slug, stdout=self.stdout)
            catalogue = REALDATA_RINGS / "data" / "example_ring_catalog_basic.csv"
            if catalogue.is_file():
                call_command("import_subjects", str(catalogue), images=str(REALDATA_RINGS), project=project.slug,
                             subject_set="DECaLS rings (real)", survey="DECaLS DR5", stdout=self.stdout)
        n = Subject.objects.filter(project=project).count()
        self.stdout.write(f"Project {project.slug!r}: {n} galaxies.")
        self._scientist(username)

    def _scientist(self, username: str) -> None:
        password_file = Path(settings.VAR_DIR) / "scientist-password.txt"
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        elif password_file.is_file():
            password = password_file.read_text().strip()
        else:
            password = "(unchanged; reset it with: .venv/bin/python manage.py changepassword %s)" % username
        self.stdout.write(self.style.SUCCESS(
            f"Scientist login: user {username!r}, password {password}  (kept in {password_file})"))
