"""The selector's fast path: a precomputed per-project queue in Redis.

Keys (all under ``zoo:classify:``):

- ``q:{project}``    sorted set, the project's top ``QUEUE_SIZE`` active subjects; the score is the rank
                     in the database order (priority descending, then the random ``shuffle`` key), so a
                     walk from rank 0 is exactly the walk of the ``subject_queue_idx`` index.
- ``gold:{project}`` sorted set of the project's active gold-standard subjects, in ``shuffle`` order.
- ``hard:{project}`` sorted set of the project's ``HARD_SIZE`` hardest active subjects (``difficulty``
                     descending), from which skilled volunteers get a share of their subjects first.
- ``fresh:{project}`` when the queue was built. Older than ``QUEUE_MAX_AGE`` seconds, the selector asks a
                     worker to rebuild it (task ``classify.subject_queue_refresh``) and goes on with it; gone
                     (after twice that, or never built), the selector rebuilds it itself.
- ``seen:{volunteer}`` sorted set of the subjects served to the volunteer: score = time served, or
                     ``CLASSIFIED`` once classified. A member counts as seen while its score is above
                     now - ``SERVED_TTL``. The sentinel member ``0`` marks the set as loaded from the
                     database (a missing set is rebuilt from ``ServedSubject`` and ``Classification``).
- ``cursor:{project}:{volunteer}`` hash: where the volunteer's last walks of this build of the queue (``q``)
                     and of the hard set (``h``) stopped, as the score of the last member looked at, and the
                     build (``b``, the ``fresh`` value) they belong to. Every member up to there was, when the
                     walk passed it, classified by the volunteer, served to them within ``SERVED_TTL`` or
                     picked, so the next walk starts after it: a pick costs the same whatever the volunteer's
                     history, instead of re-reading every subject they have seen at the top of the queue.
                     A new build of the queue starts the walks from the top again (at least every
                     ``QUEUE_MAX_AGE``), which is also when a subject abandoned more than ``SERVED_TTL`` ago
                     that the cursor had passed can be served again.
- ``skill:{volunteer}`` "accuracy n_gold" of the volunteer (``Volunteer.accuracy``, ``Volunteer.n_gold``;
                     accuracy ``-1`` while unknown), read in the same round trip as the queue's state; the
                     aggregator rewrites it when it learns more, and a missing one (after ``SKILL_TTL``, or
                     dropped by a sweep) is read from the database.
- ``aggregate:pending`` list of committed classification ids waiting for the aggregator. A submission
                     appends its id; the one that finds the list empty sends the drain task
                     (``learning.aggregation_drain``), which aggregates until the list is empty. A lost id
                     is still ``aggregated_at IS NULL`` in the database, where the catch-up finds it.

Redis holds no state that the database does not: everything here can be flushed at any time and is
rebuilt on demand, and the selector re-checks what Redis picks against the database (retired,
classified), so Redis being stale never serves a retired or already-classified subject.
"""
from __future__ import annotations

import logging
import time
from functools import lru_cache

from django.conf import settings
from redis.exceptions import RedisError

from zooplatform.core.redis_direct import direct

logger = logging.getLogger(__name__)

PREFIX = "zoo:classify:"
QUEUE_SIZE = 20_000
QUEUE_MAX_AGE = 300  # seconds before the selector has a queue nobody refreshed rebuilt
SEEN_KEY_TTL = 7 * 24 * 3600  # an idle volunteer's seen set is dropped, and rebuilt if they return
SERVED_TTL = 2 * 3600  # a subject served but never classified may be served again after this long
CLASSIFIED = 9.0e15  # the score of a classified subject: larger than any timestamp, exact in a double
PENDING_KEY = f"{PREFIX}aggregate:pending"
MAX_SCAN = 5_000  # the most members one walk looks at past its cursor (beyond that, the index answers)
HARD_SIZE = 2_000  # the hardest subjects kept for skilled volunteers
SKILL_TTL = 3600  # a volunteer's skill copy is read again from the database at least this often


@lru_cache(maxsize=1)
def _client_for(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30)


def client():
    """The Redis client, or None when ``REDIS_URL`` is not configured (the index path is used then)."""
    url = getattr(settings, "REDIS_URL", None)
    return _client_for(url) if url else None


def queue_key(project_id: int) -> str:
    return f"{PREFIX}q:{project_id}"


def gold_key(project_id: int) -> str:
    return f"{PREFIX}gold:{project_id}"


def fresh_key(project_id: int) -> str:
    return f"{PREFIX}fresh:{project_id}"


def seen_key(volunteer_id: int) -> str:
    return f"{PREFIX}seen:{volunteer_id}"


def hard_key(project_id: int) -> str:
    return f"{PREFIX}hard:{project_id}"


def skill_key(volunteer_id: int) -> str:
    return f"{PREFIX}skill:{volunteer_id}"


def cursor_key(project_id: int, volunteer_id: int) -> str:
    return f"{PREFIX}cursor:{project_id}:{volunteer_id}"


# Pick ``n_gold`` unseen gold subjects (starting at a random rank, wrapping), then ``n_hard`` unseen
# subjects from the hardest down, then unseen queue subjects up to ``n_total`` (more gold if the queue
# runs dry), and mark them all served, in one atomic step: two requests of the same volunteer can never
# be handed the same subject. The hard and queue walks start after the volunteer's cursors for this build
# of the queue (their members' scores are build-time ranks, so removing a retired subject shifts nothing)
# and leave the cursors on the last member they looked at: everything before it is now seen.
_PICK = """
local queue, gold, seen, hard, fresh, cursor = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local n_gold, n_total = tonumber(ARGV[1]), tonumber(ARGV[2])
local now, cutoff = tonumber(ARGV[3]), tonumber(ARGV[4])
local gold_start, max_scan, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local n_hard, cursor_ttl = tonumber(ARGV[8]), tonumber(ARGV[9])
local build = redis.call('GET', fresh)
local from = {q = '-inf', h = '-inf'}
if build then
  local c = redis.call('HMGET', cursor, 'b', 'q', 'h')
  if c[1] == build then
    from.q, from.h = c[2] or '-inf', c[3] or '-inf'
  end
end
local exclude = {}
local picked = {}
local function take(id)
  if exclude[id] then return end
  local s = redis.call('ZSCORE', seen, id)
  if s and tonumber(s) >= cutoff then return end
  exclude[id] = true
  picked[#picked + 1] = id
end
local batch = 200
local function pick_gold(want)
  local g = redis.call('ZCARD', gold)
  local scanned = 0
  while #picked < want and scanned < g and scanned < max_scan do
    local start = (gold_start + scanned) % g
    local stop = math.min(start + batch - 1, g - 1, start + (g - scanned) - 1)
    local ids = redis.call('ZRANGE', gold, start, stop)
    for _, id in ipairs(ids) do
      if #picked >= want then break end
      take(id)
    end
    scanned = scanned + #ids
  end
end
-- Walk a set in score order from the cursor ``from[name]``; returns 1 when the set has nothing more.
-- Past the cursor most members are new to the volunteer, so the first read asks for a few more than are
-- wanted, and each further read for twice as many, up to ``batch``.
local function walk(key, name, want)
  local scanned, size = 0, want - #picked + 4
  while #picked < want do
    if scanned >= max_scan then return 0 end
    local start = from[name] == '-inf' and '-inf' or '(' .. from[name]
    local rows = redis.call('ZRANGE', key, start, '+inf', 'BYSCORE', 'LIMIT', 0, size, 'WITHSCORES')
    size = math.min(2 * size, batch)
    if #rows == 0 then return 1 end
    for i = 1, #rows, 2 do
      if #picked >= want then break end
      take(rows[i])
      from[name] = rows[i + 1]
      scanned = scanned + 1
    end
  end
  return 0
end
if n_gold > 0 then pick_gold(math.min(n_gold, n_total)) end
if n_hard > 0 then walk(hard, 'h', math.min(#picked + n_hard, n_total)) end
local exhausted = walk(queue, 'q', n_total)
-- Nothing else left for this volunteer: more gold rather than nothing.
if exhausted == 1 and #picked < n_total then pick_gold(n_total) end
for _, id in ipairs(picked) do redis.call('ZADD', seen, now, id) end
redis.call('EXPIRE', seen, ttl)
if build then
  redis.call('HSET', cursor, 'b', build, 'q', from.q, 'h', from.h)
  redis.call('EXPIRE', cursor, cursor_ttl)
end
picked[#picked + 1] = tostring(exhausted)
return picked
"""


@lru_cache(maxsize=4)
def _pick_script(r):
    return r.register_script(_PICK)


def queue_state(r, *, project_id: int, volunteer_id: int) -> tuple[float | None, bool, int, tuple | None]:
    """(age of the queue in seconds or None if there is none, volunteer's seen set loaded, number of
    subjects the volunteer has seen, the volunteer's (accuracy or None, n_gold) or None if Redis has
    not got it), in one round trip.

    A built project may have no queue key at all (nothing active): the pick then reports it exhausted."""
    built, n_seen, skill = direct(r).execute(("GET", fresh_key(project_id)), ("ZCARD", seen_key(volunteer_id)),
                                             ("GET", skill_key(volunteer_id)))
    age = None if built is None else max(0.0, time.time() - float(built))
    return age, n_seen > 0, max(0, n_seen - 1), _skill_decode(skill)


def _skill_decode(raw) -> tuple | None:
    if raw is None:
        return None
    accuracy, n_gold = raw.split()
    return (None if float(accuracy) < 0 else float(accuracy)), int(n_gold)


def skill_store(r, *, skills: dict[int, tuple[float | None, int]]) -> None:
    """Record volunteers' (accuracy or None, n_gold) for the selector, as the database has them."""
    pipe = r.pipeline(transaction=False)
    for volunteer_id, (accuracy, n_gold) in skills.items():
        pipe.set(skill_key(volunteer_id), f"{-1.0 if accuracy is None else float(accuracy)!r} {int(n_gold)}", ex=SKILL_TTL)
    pipe.execute()


def skill_forget(*, volunteer_ids: list[int]) -> None:
    """Drop volunteers' skill copies (after a batch re-fit changed them); each is read again on demand."""
    r = client()
    if r is None or not volunteer_ids:
        return
    try:
        for start in range(0, len(volunteer_ids), 5000):
            r.delete(*[skill_key(v) for v in volunteer_ids[start:start + 5000]])
    except RedisError:
        logger.warning("could not drop the skill copies of %d volunteers", len(volunteer_ids), exc_info=True)


def queue_pick(r, *, project_id: int, volunteer_id: int, n_gold: int, n_total: int, gold_start: int,
               n_hard: int = 0) -> tuple[list[int], bool]:
    """Pick and mark as served up to ``n_total`` subject ids: ``n_gold`` gold, then ``n_hard`` from the
    hardest subjects, then the queue. Returns (ids in order, queue exhausted)."""
    now = time.time()
    result = direct(r).evalsha(
        _pick_script(r),
        keys=[queue_key(project_id), gold_key(project_id), seen_key(volunteer_id), hard_key(project_id),
              fresh_key(project_id), cursor_key(project_id, volunteer_id)],
        args=[n_gold, n_total, now, now - SERVED_TTL, gold_start, MAX_SCAN, SEEN_KEY_TTL, n_hard, 2 * QUEUE_MAX_AGE],
    )
    *ids, exhausted = result
    return [int(i) for i in ids], exhausted == b"1" or len(ids) < n_total


def queue_store(r, *, project_id: int, ranked_ids: list[int], gold_ids: list[int], hard_ids: list[int] = ()) -> None:
    """Replace the project's queue, gold set and hard set atomically (built under temporary keys, then
    renamed); each list in its serving order."""
    keys = [queue_key(project_id), gold_key(project_id), hard_key(project_id)]
    building = [key + ":building" for key in keys]
    pipe = r.pipeline(transaction=False)
    pipe.delete(*building)
    for tmp, ids in zip(building, (ranked_ids, gold_ids, hard_ids)):
        for start in range(0, len(ids), 5000):
            pipe.zadd(tmp, {sid: start + i for i, sid in enumerate(ids[start:start + 5000])})
    pipe.execute()
    pipe = r.pipeline(transaction=True)
    for key, tmp, ids in zip(keys, building, (ranked_ids, gold_ids, hard_ids)):
        if ids:
            pipe.rename(tmp, key)
        else:  # e.g. nothing active: no queue key; the pick reports it exhausted and the index path answers
            pipe.delete(key)
    pipe.set(fresh_key(project_id), time.time(), ex=2 * QUEUE_MAX_AGE)
    pipe.execute()


def queue_try_lock(r, *, project_id: int, seconds: int = 60) -> bool:
    return bool(r.set(f"{PREFIX}lock:{project_id}", 1, nx=True, ex=seconds))


def queue_unlock(r, *, project_id: int) -> None:
    r.delete(f"{PREFIX}lock:{project_id}")


def queue_remove(r, *, project_id: int, subject_ids: list[int]) -> None:
    """Drop subjects that turned out retired (the database said so) from the queue, gold and hard sets."""
    if subject_ids:
        pipe = r.pipeline(transaction=False)
        for key in (queue_key(project_id), gold_key(project_id), hard_key(project_id)):
            pipe.zrem(key, *subject_ids)
        pipe.execute()


def seen_load(r, *, volunteer_id: int, served: list[tuple[int, float]], classified: list[int]) -> None:
    """Fill a volunteer's seen set from the database (served times and classified subjects)."""
    key = seen_key(volunteer_id)
    pipe = r.pipeline(transaction=True)
    pipe.delete(key)
    pipe.zadd(key, {0: CLASSIFIED})
    for start in range(0, len(served), 5000):
        pipe.zadd(key, dict(served[start:start + 5000]))
    for start in range(0, len(classified), 5000):
        pipe.zadd(key, {sid: CLASSIFIED for sid in classified[start:start + 5000]})
    pipe.expire(key, SEEN_KEY_TTL)
    pipe.execute()


def submitted(r, *, volunteer_id: int, subject_id: int, classification_id: int) -> int:
    """After a classification commits, in one round trip: mark the subject classified in the volunteer's
    seen set (XX: a missing set stays missing and is rebuilt from the database) and append the
    classification to the aggregation list. Returns the list's length (1: it was empty, so no drain is
    on its way)."""
    return direct(r).execute(("ZADD", seen_key(volunteer_id), "XX", CLASSIFIED, subject_id),
                             ("RPUSH", PENDING_KEY, classification_id))[1]


def pending_push(r, classification_ids: list[int]) -> int:
    """Put classification ids (at least one) back on the aggregation list; returns its length."""
    return r.rpush(PENDING_KEY, *classification_ids)


def pending_pop(r, n: int) -> list[int]:
    """Take up to ``n`` classification ids off the aggregation list, oldest first."""
    return [int(i) for i in (r.lpop(PENDING_KEY, n) or [])]


def pending_count(r) -> int:
    return r.llen(PENDING_KEY)


def seen_forget(*, volunteer_id: int) -> None:
    """Drop a volunteer's seen set (after a merge moved history onto them); it is rebuilt on demand."""
    r = client()
    if r is not None:
        try:
            r.delete(seen_key(volunteer_id))
        except Exception:
            logger.warning("could not drop the seen set of volunteer %s", volunteer_id, exc_info=True)
