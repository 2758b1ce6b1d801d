"""Suite-wide checks: a test that needs PostgreSQL or Redis fails loudly, saying what to start."""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
# The real data: ../shared/realdata (REALDATA_DIR overrides it, as in classifier/ and the simulator).
REALDATA = Path(os.environ.get("REALDATA_DIR") or SHARED / "realdata")
# For tests that read real data directly: they skip only when the real data folder itself is absent.
needs_realdata = pytest.mark.skipif(not REALDATA.is_dir(), reason=f"{REALDATA} is absent (real data lives there)")

START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = ('redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
               "--dir /var/lib/redis --logfile /var/log/redis/ci.log")


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def pytest_sessionstart(session):
    """Refuse to run against a configured service that is down, instead of skipping its tests."""
    db = os.environ.get("DATABASE_URL", "")
    if db.startswith(("postgres://", "postgresql://")) and not _reachable(db, 5432):
        pytest.exit(f"DATABASE_URL={db} is unreachable. Start PostgreSQL: {START_POSTGRES}", returncode=3)
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        url = os.environ.get(name, "")
        if url.startswith("redis://") and not _reachable(url, 6379):
            pytest.exit(f"{name}={url} is unreachable. Start Redis: {START_REDIS}", returncode=3)


def realdata_path(*parts: str) -> Path:
    """A file under ../shared/realdata; the test skips only when the real data folder itself is absent,
    and fails when the folder is there but the file is not."""
    if not REALDATA.is_dir():
        pytest.skip(f"{REALDATA} is absent (real data lives there)")
    path = REALDATA.joinpath(*parts)
    assert path.exists(), f"{path} is missing from ../shared/realdata"
    return path


# The test run's own services and harness flags never reach a process that plays a fresh deployment.
NOT_INHERITED = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_ALLOW_ASYNC_UNSAFE", "ZOO_ENV")


def run_in_repo(args, env_overrides, timeout=120) -> subprocess.CompletedProcess:
    """Run ``args`` in the repository with this environment minus :data:`NOT_INHERITED`, plus ``env_overrides``."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(env_overrides)
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
