"""``zooplatform.core.redis_direct``: commands on the thread's own connection answer as redis-py does."""
from __future__ import annotations

import threading
import uuid

import pytest
from django.conf import settings
from redis.exceptions import ResponseError

from zooplatform.classify import queue
from zooplatform.core.redis_direct import direct

pytestmark = pytest.mark.skipif(not getattr(settings, "REDIS_URL", None),
                                reason="REDIS_URL is not set: these run in the PostgreSQL + Redis pass")


@pytest.fixture
def r():
    client = queue.client()
    prefix = f"zoo:test:direct:{uuid.uuid4().hex}:"
    yield client, prefix
    keys = list(client.scan_iter(prefix + "*"))
    if keys:
        client.delete(*keys)


def test_replies_are_redis_pys(r):
    client, p = r
    ours = direct(client).execute(("INCR", p + "n"), ("EXPIRE", p + "n", 60), ("ZADD", p + "z", "XX", 9.0e15, 7),
                                  ("ZADD", p + "z", 1.5, 7), ("RPUSH", p + "l", 42), ("GET", p + "n"), ("GET", p + "none"))
    pipe = client.pipeline(transaction=False)
    pipe.incr(p + "n2").expire(p + "n2", 60).zadd(p + "z2", {7: 9.0e15}, xx=True).zadd(p + "z2", {7: 1.5})
    pipe.rpush(p + "l2", 42).get(p + "n2").get(p + "none")
    theirs = pipe.execute()
    assert ours == [1, 1, 0, 1, 1, b"1", None]
    assert [int(x) if isinstance(x, bool) else x for x in theirs] == ours
    assert client.zscore(p + "z", 7) == 1.5 and client.lrange(p + "l", 0, -1) == [b"42"]


def test_an_error_reply_is_raised_after_every_reply_is_read(r):
    client, p = r
    client.set(p + "s", "text")
    with pytest.raises(ResponseError):
        direct(client).execute(("INCR", p + "s"), ("SET", p + "after", "1"))
    assert client.get(p + "after") == b"1"  # the command after the error ran
    assert direct(client).execute(("GET", p + "after")) == [b"1"]  # and the connection is still in step


def test_a_script_the_server_does_not_know_is_loaded(r):
    client, p = r
    script = client.register_script(f"-- {uuid.uuid4()}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert direct(client).evalsha(script, keys=[p + "k"], args=[5]) == 5
    assert direct(client).evalsha(script, keys=[p + "k"], args=[2]) == 7


def test_a_connection_the_server_closed_is_replaced(r):
    client, p = r
    (before,) = direct(client).execute(("CLIENT", "ID"))
    client.client_kill_filter(_id=before)
    (after,) = direct(client).execute(("CLIENT", "ID"))
    assert after != before


def test_each_thread_and_each_process_has_its_own_connection(r):
    client, p = r
    ids = []
    threads = [threading.Thread(target=lambda: ids.append(direct(client).execute(("CLIENT", "ID"))[0]))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (mine,) = direct(client).execute(("CLIENT", "ID"))
    assert len(set(ids + [mine])) == 4
    direct(client)._local.conn.pid = -1  # as a forked child sees its parent's connection
    assert direct(client).execute(("CLIENT", "ID"))[0] != mine
