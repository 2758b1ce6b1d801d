"""Load test of the volunteer API: gunicorn + PostgreSQL + Redis on this machine, volunteers on loopback.

    .venv/bin/python benchmarks/volunteer_load.py [--volunteers 64] [--seconds 60] [--warmup 10]
        [--workers 3] [--threads 4] [--subjects 50000] [--rate R]

Builds a throw-away PostgreSQL database ``bench_zoo_load`` (dropped afterwards; the shared ``test`` database
is never touched) and uses Redis database 13 for the cache, the selector's queue and the Celery broker
(flushed before and after). Starts gunicorn with ``docker/gunicorn.conf.py`` (gthread workers), then plays
``--volunteers`` anonymous volunteers, each on its own keep-alive connection with its own session: open the
classify page (CSRF cookie), fetch the next subjects five at a time as the page prefetches, submit a
classification for each (a valid path through the tree, zero to three boxes in image pixels), and re-send
2% of submissions with the same key, as a browser retrying after a lost response would. By default a closed
loop with no think time: the rate is what the server sustains, and the latency is mostly the queue of the
other volunteers' requests (Little's law: volunteers / rate). With ``--rate R`` the volunteers submit on a
Poisson schedule adding up to R per second, as many real volunteers with think time do: the latency is then
what one volunteer waits at that load. The load generator is a small asyncio HTTP/1.1 client
(no package needed) so that it takes as little of the two cores as possible.

Reports sustained classifications per second, p50/p95/p99 latency of both endpoints over the measured window
(after the warm-up), errors, the machine load before and after, and checks that the database holds exactly
one classification (with its boxes) per accepted submission and nothing else. Both throttles stay on (with
rates raised above what this one loopback address sends). The tables the run writes are analysed when the
warm-up ends, as autovacuum would on a running platform (see ``WRITTEN_TABLES``).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from volunteer_common import (  # noqa: E402
    REPO, RESULTS, analyze, django_setup, env_for, load_subjects, machine_load, migrate, percentiles,
    scratch_services,
)

DB, REDIS_DB = "bench_zoo_load", 13
WINDOW_S = 30.0  # the windows in which the rate and p99 are also reported
PORT = 8799
PATHS = [
    [("smooth-or-featured", "smooth"), ("how-rounded", "round"), ("merging", "none")],
    [("smooth-or-featured", "smooth"), ("how-rounded", "cigar-shaped"), ("merging", "minor-disturbance")],
    [("smooth-or-featured", "featured-or-disk"), ("disk-edge-on", "no"), ("bar", "strong"), ("has-spiral-arms", "yes"),
     ("spiral-winding", "tight"), ("spiral-arm-count", "2"), ("bulge-size", "small"), ("merging", "none")],
    [("smooth-or-featured", "featured-or-disk"), ("disk-edge-on", "yes"), ("edge-on-bulge", "boxy"), ("merging", "none")],
    [("smooth-or-featured", "artifact")],
]


class Connection:
    """Just enough HTTP/1.1 for this benchmark: keep-alive, Content-Length or chunked bodies, cookies."""

    def __init__(self, port: int):
        self.port, self.reader, self.writer, self.cookies = port, None, None, {}

    async def _connect(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """Send one request. A kept-alive connection the server closed while idle (gunicorn's keepalive)
        is reopened and the request sent again, as browsers do; the submissions are idempotent on their key."""
        reused = self.writer is not None
        try:
            return await self._request(method, path, body, headers)
        except (ConnectionError, asyncio.IncompleteReadError):
            if not reused:
                raise
            self.close()
            return await self._request(method, path, body, headers)

    async def _request(self, method: str, path: str, body: bytes | None, headers: dict | None):
        if self.writer is None:
            await self._connect()
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Accept: application/json"]
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed")
        status = int(status_line.split()[1])
        response_headers: dict[str, str] = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "set-cookie":
                cookie = value.split(";", 1)[0]
                k, _, v = cookie.partition("=")
                self.cookies[k] = v
            response_headers[name] = value
        if "content-length" in response_headers:
            data = await self.reader.readexactly(int(response_headers["content-length"]))
        elif response_headers.get("transfer-encoding") == "chunked":
            data = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                data += chunk[:-2]
        else:
            data = await self.reader.read()
        if response_headers.get("connection", "").lower() == "close":
            self.close()
        return status, response_headers, data

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Stats:
    def __init__(self, measure_from: float, measure_to: float):
        self.measure_from, self.measure_to = measure_from, measure_to
        self.latency = {"next": [], "submit": []}
        self.ends = {"next": [], "submit": []}  # when each measured request was answered, for the windows
        self.status: dict[str, dict[int, int]] = {"next": {}, "submit": {}, "retry": {}}
        self.accepted: dict[int, int] = {}  # classification id -> boxes sent
        self.accepted_in_window = 0
        self.replays_ok = self.replays_bad = self.errors = 0

    def record(self, kind: str, start: float, end: float, status: int):
        self.status[kind][status] = self.status[kind].get(status, 0) + 1
        if kind in self.latency and self.measure_from <= end <= self.measure_to:
            self.latency[kind].append((end - start) * 1000)
            self.ends[kind].append(end - self.measure_from)

    def windows(self, kind: str, width: float) -> list[dict]:
        """Requests per second and p99 latency in consecutive windows of ``width`` seconds: "sustained"
        means every window, not only the run's average (a stall or a slow drift shows here)."""
        import numpy as np

        ends, ms = np.asarray(self.ends[kind]), np.asarray(self.latency[kind])
        out = []
        for lo in np.arange(0.0, self.measure_to - self.measure_from - 1e-9, width):
            inside = (ends >= lo) & (ends < lo + width)
            out.append({"from_s": float(lo), "per_s": float(inside.sum() / width),
                        "p99_ms": float(np.percentile(ms[inside], 99)) if inside.any() else float("nan")})
        return out


def make_payload(subject: dict, rng: random.Random) -> tuple[dict, int]:
    path = rng.choice(PATHS)
    n_boxes = 0 if path[0][1] == "artifact" else rng.choice([0, 0, 1, 2, 3])
    boxes = []
    for _ in range(n_boxes):
        w, h = rng.uniform(4, 40), rng.uniform(4, 40)
        boxes.append({"x": round(rng.uniform(0, subject["width"] - w), 2), "y": round(rng.uniform(0, subject["height"] - h), 2),
                      "width": round(w, 2), "height": round(h, 2)})
    return {
        "subject": subject["id"], "workflow_version": subject["workflow_version"], "key": str(uuid.uuid4()),
        "answers": [{"question": q, "answer": a} for q, a in path], "boxes": boxes,
        "no_clumps": n_boxes == 0 and path[0][1] != "artifact",
        "started_at": "2026-11-23T10:00:00Z", "finished_at": "2026-11-23T10:00:09Z",
    }, n_boxes


async def volunteer(i: int, stats: Stats, deadline: float, retry_rate: float, pace: float | None):
    """One volunteer. ``pace`` None: closed loop, the next classification as soon as the last is answered.
    ``pace`` (classifications per second of this volunteer): a Poisson schedule of submissions; a late
    answer delays only this volunteer's next one (a browser submits one at a time)."""
    rng = random.Random(i)
    conn = Connection(PORT)
    due = time.perf_counter() + (rng.expovariate(pace) if pace else 0.0)
    try:
        await conn.request("GET", "/classify/")  # the page: sets the CSRF cookie
        queue: list[dict] = []
        while time.perf_counter() < deadline:
            if pace:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                due += rng.expovariate(pace)
                if time.perf_counter() >= deadline:
                    break
            if len(queue) < 2:
                t = time.perf_counter()
                status, _, body = await conn.request("GET", "/api/subjects/next/?n=5")
                stats.record("next", t, time.perf_counter(), status)
                if status == 200:
                    queue.extend(json.loads(body))
                if not queue:
                    await asyncio.sleep(0.05)
                    continue
            subject = queue.pop(0)
            payload, n_boxes = make_payload(subject, rng)
            body = json.dumps(payload).encode()
            headers = {"X-CSRFToken": conn.cookies.get("csrftoken", "")}
            t = time.perf_counter()
            status, response_headers, data = await conn.request("POST", "/api/classifications/", body, headers)
            end = time.perf_counter()
            stats.record("submit", t, end, status)
            if status != 201:
                continue
            cid = json.loads(data)["id"]
            stats.accepted[cid] = n_boxes
            if stats.measure_from <= end <= stats.measure_to:
                stats.accepted_in_window += 1
            if rng.random() < retry_rate:
                t = time.perf_counter()
                status, response_headers, data = await conn.request("POST", "/api/classifications/", body, headers)
                stats.record("retry", t, time.perf_counter(), status)
                ok = status == 201 and json.loads(data)["id"] == cid and response_headers.get("idempotent-replayed") == "true"
                stats.replays_ok += ok
                stats.replays_bad += not ok
    except Exception as exc:  # a broken connection counts as an error; the volunteer stops
        stats.errors += 1
        print(f"volunteer {i}: {exc!r}", file=sys.stderr)
    finally:
        conn.close()


# The tables a run writes. A fresh database's first plans for them (the foreign-key checks, the prepared
# statements) are made while they are empty: sequential scans, which then read every row written so far,
# for every classification. A running platform has statistics for them (autovacuum analyses them as they
# grow), so the run analyses them when the warm-up ends, as autovacuum would; PostgreSQL then replans.
WRITTEN_TABLES = ("classify_classification", "classify_clumpbox", "classify_servedsubject", "classify_volunteer")


def analyze_written(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE " + ", ".join(WRITTEN_TABLES))


def table_scans(dsn: str) -> dict:
    """Sequential scans and rows they read, per written table, so far."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT relname, seq_scan, seq_tup_read FROM pg_stat_user_tables WHERE relname = ANY(%s)",
                            [list(WRITTEN_TABLES)]).fetchall()
    return {name: (scans, read) for name, scans, read in rows}


async def drive(volunteers: int, warmup: float, seconds: float, retry_rate: float,
                rate: float | None, dsn: str) -> tuple[Stats, float, dict]:
    start = time.perf_counter()
    stats = Stats(start + warmup, start + warmup + seconds)
    deadline = start + warmup + seconds
    pace = rate / volunteers if rate else None
    scans: dict = {}

    async def end_of_warmup():
        await asyncio.sleep(warmup)
        await asyncio.to_thread(analyze_written, dsn)
        scans.update(await asyncio.to_thread(table_scans, dsn))

    await asyncio.gather(end_of_warmup(), *(volunteer(i, stats, deadline, retry_rate, pace) for i in range(volunteers)))
    return stats, time.perf_counter() - start, scans


def wait_healthy(timeout: float = 60.0):
    import urllib.request

    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("gunicorn did not become healthy")


def cpu_seconds(pids: list[int], *, reaped: bool = False) -> float:
    """User+system CPU of processes, from /proc; with ``reaped``, also that of their children that have
    exited and been waited for (cutime + cstime)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)) / tick
        except (OSError, IndexError):
            pass
    return total


def gunicorn_cpu(master: int) -> float:
    """CPU of the gunicorn master and all its workers, including workers that ``max_requests`` recycled
    during the run (their CPU moves to the master's reaped-children counters when it waits for them)."""
    return cpu_seconds([master], reaped=True) + cpu_seconds(pids_of(parent=master))


def pids_of(*, parent: int | None = None, user: str | None = None, name: str | None = None) -> list[int]:
    args = ["pgrep"] + (["-P", str(parent)] if parent else []) + (["-u", user] if user else []) + ([name] if name else [])
    return [int(p) for p in subprocess.run(args, capture_output=True, text=True).stdout.split()]


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / tick, sum(fields) / tick


def run(args) -> dict:
    env = env_for(DB, REDIS_DB)
    env.update({
        "THROTTLE_VOLUNTEER_RATE": "100000/min", "THROTTLE_IP_RATE": "1000000/min",
        "GUNICORN_BIND": f"127.0.0.1:{PORT}", "GUNICORN_WORKERS": str(args.workers),
        "GUNICORN_THREADS": str(args.threads), "GUNICORN_ACCESSLOG": "", "DB_CONN_MAX_AGE": "600",
    })
    report: dict = {"config": vars(args), "load_before": machine_load()}
    print(f"load before: {report['load_before']}", flush=True)
    with scratch_services(DB, REDIS_DB):
        django_setup(env)
        migrate()
        from zooplatform.classify.models import Classification, ClumpBox
        from zooplatform.classify.services import subject_queue_refresh

        project, *_ = load_subjects(n=args.subjects, n_gold=args.subjects // 100, retired_fraction=0.0)
        analyze()
        subject_queue_refresh(project=project)
        from django.db import connections

        connections.close_all()
        server = subprocess.Popen(
            [str(REPO / ".venv/bin/gunicorn"), "zooplatform.wsgi:application", "-c", str(REPO / "docker/gunicorn.conf.py")],
            cwd=REPO, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        try:
            wait_healthy()
            # CPU spent on our side of the machine: gunicorn, PostgreSQL and Redis (whose other clients are
            # idle or small), and this load generator; and the machine's total, others' work included. The
            # first worker answers the health check before the others are forked: wait for all of them, or
            # their CPU would be counted as other work.
            t0 = time.time()
            while len(pids_of(parent=server.pid)) < args.workers and time.time() - t0 < 30:
                time.sleep(0.1)
            services = pids_of(user="postgres") + pids_of(name="redis-server")
            cpu0 = (gunicorn_cpu(server.pid), cpu_seconds(services), time.process_time(), machine_cpu())
            t0 = time.perf_counter()
            stats, wall, scans_at_start = asyncio.run(drive(args.volunteers, args.warmup, args.seconds, args.retry_rate,
                                                            args.rate, env["DATABASE_URL"]))
            elapsed = time.perf_counter() - t0
            server_cpu = gunicorn_cpu(server.pid) - cpu0[0]
            # Backends started during the run (none: gunicorn keeps its connections) count in full.
            services_cpu = (cpu_seconds(sorted(set(services) | set(pids_of(user="postgres")))) - cpu0[1])
            generator_cpu = time.process_time() - cpu0[2]
            busy1, total1 = machine_cpu()
            machine_busy = (busy1 - cpu0[3][0]) / elapsed
            machine_cores = (total1 - cpu0[3][1]) / elapsed
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        report["load_after"] = machine_load()
        scans_at_end = table_scans(env["DATABASE_URL"])
        report["seq_scans_measured"] = {
            name: {"scans": scans - scans_at_start.get(name, (0, 0))[0], "rows": read - scans_at_start.get(name, (0, 0))[1]}
            for name, (scans, read) in scans_at_end.items()}

        in_db = dict(Classification.objects.values_list("id", "subject_id"))
        boxes_in_db = ClumpBox.objects.count()
        duplicate_pairs = (Classification.objects.values("volunteer_id", "subject_id").distinct().count()
                           != len(in_db))
        report.update({
            "accepted_total": len(stats.accepted),
            "classifications_in_db": len(in_db),
            "exactly_one_per_accepted": set(in_db) == set(stats.accepted),
            "boxes_sent": sum(stats.accepted.values()), "boxes_in_db": boxes_in_db,
            "duplicate_volunteer_subject": duplicate_pairs,
            "rate_per_s": stats.accepted_in_window / args.seconds,
            "next_ms": percentiles(stats.latency["next"]), "submit_ms": percentiles(stats.latency["submit"]),
            "submit_windows": stats.windows("submit", WINDOW_S),
            "status": {k: {str(s): n for s, n in v.items()} for k, v in stats.status.items()},
            "replays_ok": stats.replays_ok, "replays_bad": stats.replays_bad, "client_errors": stats.errors,
            "server_cpu_s": server_cpu, "services_cpu_s": services_cpu, "generator_cpu_s": generator_cpu,
            "machine_busy_cores": machine_busy, "machine_cores": machine_cores,
            "cpu_ms_per_classification": 1000 * (server_cpu + services_cpu) / max(len(stats.accepted), 1),
            "elapsed_s": elapsed, "server_stderr_tail": server.stderr.read().decode()[-2000:],
        })
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volunteers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--subjects", type=int, default=50_000)
    parser.add_argument("--retry-rate", type=float, default=0.02)
    parser.add_argument("--rate", type=float, default=None,
                        help="offered classifications per second, spread over the volunteers as Poisson arrivals "
                             "(default: closed loop, each volunteer submits again as soon as answered)")
    args = parser.parse_args()
    report = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "volunteer_load.json"
    out.write_text(json.dumps(report, indent=2, default=float))
    n, s = report["next_ms"], report["submit_ms"]
    print(f"\nload before: {report['load_before']}\nload after:  {report['load_after']}")
    offered = f"{args.rate:g}/s offered (Poisson)" if args.rate else "closed loop, no think time"
    print(f"gunicorn {args.workers} workers x {args.threads} threads, {args.volunteers} volunteers, {offered}, "
          f"{args.seconds:.0f} s measured after {args.warmup:.0f} s warm-up")
    ours = (report["server_cpu_s"] + report["services_cpu_s"] + report["generator_cpu_s"]) / report["elapsed_s"]
    print(f"CPU during the run: gunicorn {report['server_cpu_s']:.1f} s, PostgreSQL+Redis {report['services_cpu_s']:.1f} s, "
          f"load generator {report['generator_cpu_s']:.1f} s in {report['elapsed_s']:.0f} s = {ours:.2f} cores ours; "
          f"the machine was busy {report['machine_busy_cores']:.2f} of {report['machine_cores']:.2f} cores "
          f"({report['machine_busy_cores'] - ours:.2f} cores for other work)")
    print(f"server-side CPU per accepted classification (its share of next requests included): "
          f"{report['cpu_ms_per_classification']:.2f} ms")
    print("\n| metric | value |\n|---|---|")
    print(f"| classifications accepted per second (sustained) | {report['rate_per_s']:.1f} |")
    print(f"| POST /api/classifications/ p50 / p95 / p99 ms | {s['p50']:.1f} / {s['p95']:.1f} / {s['p99']:.1f} |")
    print(f"| GET /api/subjects/next/?n=5 p50 / p95 / p99 ms | {n['p50']:.1f} / {n['p95']:.1f} / {n['p99']:.1f} |")
    w = report["submit_windows"]
    print(f"| POST per {WINDOW_S:.0f} s window: submissions/s (lowest) and p99 ms (highest) | "
          f"{min(x['per_s'] for x in w):.0f} and {max(x['p99_ms'] for x in w):.0f}: "
          + ", ".join(f"{x['per_s']:.0f}/{x['p99_ms']:.0f}" for x in w) + " |")
    print(f"| statuses | {report['status']} |")
    print(f"| idempotent re-sends answered with the same id | {report['replays_ok']} ok, {report['replays_bad']} wrong |")
    print(f"| accepted submissions / classifications in the database | {report['accepted_total']} / "
          f"{report['classifications_in_db']} (exactly one each: {report['exactly_one_per_accepted']}) |")
    print(f"| boxes sent / in the database | {report['boxes_sent']} / {report['boxes_in_db']} |")
    print(f"| volunteers stopped by a client-side error | {report['client_errors']} |")
    scans = ", ".join(f"{name} {v['scans']} ({v['rows']} rows)" for name, v in sorted(report["seq_scans_measured"].items()))
    print(f"| sequential scans of the written tables after the warm-up (rows read) | {scans} |")
    print(f"\nwritten to {out}")
    ok = report["exactly_one_per_accepted"] and report["boxes_sent"] == report["boxes_in_db"] and not report["replays_bad"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
