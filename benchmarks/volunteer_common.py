"""Shared set-up for the volunteer benchmarks: a throw-away PostgreSQL database (never the ``test`` one),
a dedicated Redis database number flushed before and after, Django configured against them, and bulk
loading of subjects and volunteers with COPY. Run the benchmarks themselves, not this file."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = REPO / "benchmarks" / "results"


def machine_load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def percentiles(samples_ms: list[float]) -> dict:
    import numpy as np

    a = np.asarray(samples_ms, dtype=float)
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max()), "mean": float(a.mean())}


def env_for(db_name: str, redis_db: int) -> dict:
    return {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db_name}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "ZOO_ENV": "test",
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
        "ZOO_VAR_DIR": tempfile.mkdtemp(prefix="zoo-bench-"),
    }


@contextmanager
def scratch_services(db_name: str, redis_db: int, keep: bool = False):
    """Create ``db_name`` (dropping a leftover one) and flush Redis database ``redis_db``; drop and flush
    again afterwards. Refuses the names other people use."""
    import psycopg
    import redis

    if db_name in {"test", "postgres", "root", "template0", "template1"} or redis_db in (0, 15):
        raise SystemExit(f"refusing to use {db_name!r} / redis db {redis_db}: they belong to others")
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db_name}"')
    r = redis.Redis.from_url(f"redis://127.0.0.1:6379/{redis_db}")
    r.flushdb()
    try:
        yield
    finally:
        r.flushdb()
        if not keep:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def django_setup(env: dict) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zooplatform.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def load_subjects(*, n: int, n_gold: int, retired_fraction: float, seed: int = 0):
    """COPY ``n`` subjects (ids 1..n) into the default project. A fifth get a positive priority (as the
    learning loop would give), the rest tie at 0 and are ordered by their random ``shuffle``. Returns
    (project, workflow version id, subject ids in the selector's order, gold ids, active mask)."""
    import numpy as np
    from django.db import connection

    from zooplatform.galaxies.models import GoldStandard, SubjectSet
    from zooplatform.galaxies.services import project_bootstrap
    from zooplatform.workflows.selectors import workflow_version_current

    rng = np.random.default_rng(seed)
    project = project_bootstrap()
    subject_set = SubjectSet.objects.create(project=project, name="bench")
    priority = np.where(rng.random(n) < 0.2, rng.gamma(2.0, 1.0, n), 0.0)
    shuffle = rng.random(n)
    active = rng.random(n) >= retired_fraction
    ids = np.arange(1, n + 1)
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        raw = cursor.connection
        with raw.cursor() as cur, cur.copy(
            "COPY galaxies_subject (id, project_id, subject_set_id, external_id, image, width, height, fits, survey,"
            " survey_ids, metadata, state, priority, shuffle, created_at) FROM STDIN"
        ) as copy:
            for i in range(n):
                copy.write_row((int(ids[i]), project.pk, subject_set.pk, f"BENCH-{ids[i]:07d}",
                                f"subjects/{project.pk}/bench-{ids[i] % 1000}.jpg", 424, 424, "", "bench", "{}", "{}",
                                "active" if active[i] else "retired", float(priority[i]), float(shuffle[i]),
                                "2026-11-01T00:00:00Z"))
        cursor.execute("SELECT setval(pg_get_serial_sequence('galaxies_subject', 'id'), %s)", [n])
    order = np.lexsort((shuffle, -priority))  # the selector's order: priority desc, then shuffle
    gold_ids = rng.choice(ids[active], size=n_gold, replace=False)
    GoldStandard.objects.bulk_create([GoldStandard(subject_id=int(s), answers=[
        {"question": "smooth-or-featured", "answer": "smooth"}, {"question": "how-rounded", "answer": "round"},
        {"question": "merging", "answer": "none"}], feedback="smooth, round") for s in gold_ids], batch_size=5000)
    print(f"  {n} subjects ({active.sum()} active, {n_gold} gold) loaded in {time.perf_counter() - t0:.1f} s",
          flush=True)
    version = workflow_version_current(project=project)
    return project, version.pk, ids[order], set(int(g) for g in gold_ids), active[order]


def load_volunteers(n: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        with cursor.connection.cursor() as cur, cur.copy(
                "COPY classify_volunteer (id, session_key, created_at) FROM STDIN") as copy:
            for i in range(1, n + 1):
                copy.write_row((i, f"bench-session-{i:07d}", "2026-11-01T00:00:00Z"))
        cursor.execute("SELECT setval(pg_get_serial_sequence('classify_volunteer', 'id'), %s)", [n])


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
