"""manage.py runplatform: the whole platform in one terminal.

Starts the web server, a Celery worker for the default queue, a Celery worker for the gpu queue
(training and scoring; it runs on the CPU when there is no GPU) and Celery beat, prefixes their
output, and stops all of them on one Ctrl-C. If any of them dies, the others are stopped too, so a
half-running platform never goes unnoticed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web server, Celery workers (default and gpu queues) and Celery beat until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("ZOO_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("ZOO_PORT", "8000")))
        parser.add_argument("--server", choices=["runserver", "gunicorn"], default="runserver",
                            help="runserver (development, serves media) or gunicorn (production-like)")
        parser.add_argument("--no-beat", action="store_true", help="do not start Celery beat")
        parser.add_argument("--worker-concurrency", type=int, default=2)

    def handle(self, *args, host, port, server, no_beat, worker_concurrency, **options):
        python = sys.executable
        celery = [python, "-m", "celery", "-A", "zooplatform"]
        if server == "gunicorn":
            web = [python, "-m", "gunicorn", "zooplatform.wsgi:application", "--bind", f"{host}:{port}",
                   "--workers", "2", "--threads", "4", "--access-logfile", "-"]
        else:
            web = [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"]
        commands = {
            "web": web,
            # Two workers so that a long retraining never delays the per-classification updates.
            "worker": celery + ["worker", "-Q", "default", "-n", "default@%h", "-c", str(worker_concurrency),
                                "-l", "INFO"],
            "gpu-worker": celery + ["worker", "-Q", "gpu", "-n", "gpu@%h", "-c", "1", "-l", "INFO"],
        }
        if not no_beat:
            commands["beat"] = celery + ["beat", "-l", "INFO", "--schedule", str(settings.VAR_DIR / "celerybeat-schedule")]

        env = dict(os.environ, PYTHONUNBUFFERED="1")
        children: dict[str, subprocess.Popen] = {}
        stopping = threading.Event()

        def pump(name: str, proc: subprocess.Popen):
            for line in proc.stdout:
                sys.stdout.write(f"[{name:<10}] {line}")
                sys.stdout.flush()

        def stop(*_):
            stopping.set()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for name, cmd in commands.items():
            # Own process group: the terminal's Ctrl-C reaches only this command, which then stops
            # each child in order (workers finish or hand back their current task first).
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                    cwd=settings.BASE_DIR, start_new_session=True)
            children[name] = proc
            threading.Thread(target=pump, args=(name, proc), daemon=True).start()

        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
        self.stdout.write(self.style.SUCCESS(
            f"\nThe platform is starting at {url}  (dashboard: {url}dashboard/, admin: {url}admin/)\n"
            f"Processes: {', '.join(children)}. Press Ctrl-C once to stop them all.\n"))
        failed = None
        while not stopping.is_set():
            for name, proc in children.items():
                if proc.poll() is not None:
                    failed = (name, proc.returncode)
                    stopping.set()
                    break
            time.sleep(0.3)
        if failed:
            self.stderr.write(f"{failed[0]} exited with code {failed[1]}; stopping the rest")
        self._stop_all(children)
        self.stdout.write("Stopped.")
        if failed:
            sys.exit(1)

    def _stop_all(self, children: dict[str, subprocess.Popen], timeout: float = 20.0) -> None:
        # SIGTERM to each main process only: a Celery worker then does a warm shutdown of its own pool
        # (signalling the whole group would kill the pool's children under it).
        for proc in children.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in children.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
