"""The next-subject selector at Galaxy Zoo scale: 10^6 subjects, 10^5 volunteers with a long-tailed history.

    .venv/bin/python benchmarks/volunteer_selector.py [--subjects 1000000] [--volunteers 100000] [--calls 1500]

Builds a throw-away PostgreSQL database ``bench_zoo`` (dropped afterwards; the shared ``test`` database is
never touched) and uses Redis database 14 (flushed before and after). Loads the subjects with COPY (a fifth
with a positive priority, 3% retired, 2,000 gold), 10^5 volunteers whose histories follow a long tail (most
a handful, a few thousand), each history drawn from the head of the priority order where the selector has to
skip it, with a served row per classification. 5% of the active galaxies get a random ``difficulty`` and a
tenth of the volunteers are skilled, so that matching runs as its defaults would (half of a skilled
volunteer's galaxies from the hardest). Then times ``subjects_serve(n=5)``, the whole service a request runs
(pick, database confirmation, recording what was served), on both paths: the Redis queue and the database
index alone, for typical, heavy (1,000+ classified) and skilled volunteers. Each sampled volunteer is served
twice: the first call is cold (their seen set is loaded from the database), the second warm. Target: p99
under 20 ms.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from volunteer_common import (  # noqa: E402
    RESULTS, analyze, django_setup, env_for, load_subjects, load_volunteers, machine_load, migrate, percentiles,
    scratch_services,
)

DB, REDIS_DB = "bench_zoo", 14


def histories(n_volunteers: int, rng):
    """Classified-subject counts: 80% 0-10, 17% 10-100, 2.9% 100-1000, 0.1% 1000-3000."""
    import numpy as np

    u = rng.random(n_volunteers)
    h = np.where(u < 0.80, rng.integers(0, 11, n_volunteers),
                 np.where(u < 0.97, rng.integers(10, 101, n_volunteers),
                          np.where(u < 0.999, rng.integers(100, 1001, n_volunteers),
                                   rng.integers(1000, 3001, n_volunteers))))
    return h


def load_history(order, active, gold_ids, version_id, counts, rng):
    import numpy as np
    from django.db import connection

    head = order[active]  # active subjects in the selector's order
    head = head[~np.isin(head, list(gold_ids))]
    t0 = time.perf_counter()
    total = 0
    with connection.cursor() as cursor:
        raw = cursor.connection
        with raw.cursor() as cur:
            with cur.copy("COPY classify_classification (volunteer_id, subject_id, workflow_version_id, key, answers,"
                          " no_clumps, created_at, aggregated_at, client) FROM STDIN") as copy:
                picks = {}
                for vid, h in enumerate(counts, start=1):
                    if h == 0:
                        continue
                    # Drawn from the top 2h of the queue: exactly where the selector must skip them.
                    chosen = head[rng.choice(min(2 * h, head.size), size=h, replace=False)]
                    picks[vid] = chosen
                    for s in chosen:
                        copy.write_row((vid, int(s), version_id, f"k{s}", "[]", False, "2026-11-10T00:00:00Z",
                                        "2026-11-10T00:00:01Z", "{}"))
                    total += h
            with cur.copy("COPY classify_servedsubject (volunteer_id, subject_id, workflow_version_id, served_at)"
                          " FROM STDIN") as copy:
                for vid, chosen in picks.items():
                    for s in chosen:
                        copy.write_row((vid, int(s), version_id, "2026-11-10T00:00:00Z"))
    print(f"  {total} classifications and served rows loaded in {time.perf_counter() - t0:.1f} s", flush=True)
    return total


def run(args) -> dict:
    import numpy as np

    env = env_for(DB, REDIS_DB)
    print(f"load before: {machine_load()}", flush=True)
    with scratch_services(DB, REDIS_DB, keep=args.keep):
        django_setup(env)
        migrate()
        from django.db import connection

        from zooplatform.classify import queue
        from zooplatform.classify.selectors import ServingContext, subjects_next_for_volunteer
        from zooplatform.classify.services import subject_queue_refresh, subjects_serve

        rng = np.random.default_rng(1)
        project, version_id, order, gold_ids, active = load_subjects(
            n=args.subjects, n_gold=2000, retired_fraction=0.03)
        load_volunteers(args.volunteers)
        counts = histories(args.volunteers, rng)
        n_hist = load_history(order, active, gold_ids, version_id, counts, rng)
        t0 = time.perf_counter()
        analyze()
        print(f"  VACUUM ANALYZE {time.perf_counter() - t0:.1f} s", flush=True)
        t0 = time.perf_counter()
        with connection.cursor() as cursor:
            # Matching as the defaults run it: 5% of the active galaxies are hard (undecided after enough votes),
            # a tenth of the volunteers skilled; a skilled volunteer gets half their galaxies from the hardest.
            cursor.execute("UPDATE galaxies_subject SET difficulty = random() WHERE state = 'active' AND mod(id, 20) = 0 "
                           "AND id NOT IN (SELECT subject_id FROM galaxies_goldstandard)")
            cursor.execute("UPDATE classify_volunteer SET accuracy = 0.9, n_gold = 20 WHERE mod(id, 10) = 0")
            cursor.execute("SELECT id FROM galaxies_subject WHERE difficulty > 0")
            hard_ids = {row[0] for row in cursor.fetchall()}
        skilled = list(range(10, args.volunteers + 1, 10))
        print(f"  difficulty and skill set in {time.perf_counter() - t0:.1f} s", flush=True)
        context = ServingContext(project_id=project.pk, project_slug=project.slug, workflow_version_id=version_id,
                                 hard_share=0.5, skilled_accuracy=0.8, skilled_min_gold=10)

        t0 = time.perf_counter()
        queued = subject_queue_refresh(project=project)
        refresh_ms = (time.perf_counter() - t0) * 1000
        print(f"  subject_queue_refresh: {queued} queued in {refresh_ms:.0f} ms", flush=True)

        heavy = [int(v) for v in np.flatnonzero(counts >= 1000) + 1]
        pyrng = random.Random(5)
        results = {}
        real_client = queue.client
        for path in ("redis", "index"):
            queue.client = real_client if path == "redis" else (lambda: None)
            for group, pool in (("typical", None), ("heavy", heavy), ("skilled", skilled)):
                cold, warm, served_hard, served = [], [], 0, 0
                calls = args.calls if group == "typical" else min(args.calls // 3, len(pool))
                volunteers = pyrng.sample(pool, calls) if pool else pyrng.sample(range(1, args.volunteers + 1), calls)
                for vid in volunteers:
                    for series in (cold, warm):
                        t = time.perf_counter()
                        got = subjects_serve(volunteer_id=vid, context=context, n=5, rng=pyrng)
                        series.append((time.perf_counter() - t) * 1000)
                        assert len(got) == 5
                        served_hard += sum(g.pk in hard_ids for g in got)
                        served += len(got)
                results[f"{path}/{group}/cold"] = percentiles(cold)
                results[f"{path}/{group}/warm"] = percentiles(warm)
                results[f"{path}/{group}/cold"]["hard_served"] = results[f"{path}/{group}/warm"]["hard_served"] = \
                    served_hard / served
                print(f"  {path:5} {group:7} cold p50 {results[f'{path}/{group}/cold']['p50']:.2f} ms "
                      f"p99 {results[f'{path}/{group}/cold']['p99']:.2f} ms | warm p50 "
                      f"{results[f'{path}/{group}/warm']['p50']:.2f} ms p99 {results[f'{path}/{group}/warm']['p99']:.2f} ms"
                      f" | hard galaxies {100 * served_hard / served:.0f} % of those served", flush=True)
        queue.client = real_client

        # The index walk alone, for the heaviest volunteer: its plan and timing.
        vid = int(np.argmax(counts)) + 1
        qs = subjects_next_for_volunteer(volunteer_id=vid, project_id=project.pk, limit=5)
        sql, params = qs.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            plan = [row[0] for row in cursor.fetchall()]
        print(f"  plan of the index walk for volunteer {vid} ({counts[vid - 1]} classified):")
        print("    " + "\n    ".join(plan[:14]))
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
            db_size = cursor.fetchone()[0]
        redis_mem = queue.client().info("memory")["used_memory_human"]

    return {
        "subjects": args.subjects, "volunteers": args.volunteers, "classifications": int(n_hist),
        "heavy_volunteers": len(heavy), "queue_refresh_ms": refresh_ms, "queue_size": queued,
        "results_ms": results, "plan_heaviest": plan, "db_size": db_size, "redis_used_memory": redis_mem,
        "load_after": machine_load(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--volunteers", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=1500, help="typical volunteers sampled per path")
    parser.add_argument("--keep", action="store_true", help="keep the bench_zoo database afterwards")
    args = parser.parse_args()
    t0 = time.perf_counter()
    report = run(args)
    report["wall_s"] = time.perf_counter() - t0
    print(f"load after: {report['load_after']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "volunteer_selector.json"
    out.write_text(json.dumps(report, indent=2, default=float))
    print("\n| path | volunteers | call | p50 ms | p95 ms | p99 ms | max ms | hard galaxies served |"
          "\n|---|---|---|---|---|---|---|---|")
    for key, r in report["results_ms"].items():
        path, group, call = key.split("/")
        print(f"| {path} | {group} | {call} | {r['p50']:.2f} | {r['p95']:.2f} | {r['p99']:.2f} | {r['max']:.2f} | "
              f"{100 * r['hard_served']:.0f} % |")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
