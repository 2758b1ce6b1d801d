"""Redis commands of the request paths, written straight to one connection per thread.

Through ``redis.Redis`` a command costs about three times its round trip in Python: the client takes a
connection from the pool (polling its socket), times and records the operation, gives the connection back
and dispatches events; a pipeline builds, runs and resets a command stack. Under the volunteer load
benchmark that was most of what a Redis call cost. Here each thread keeps one of redis-py's own
connections, so its connect, AUTH/SELECT, hiredis parser, socket timeouts, health check and retry policy
are the client's, and the commands of one round trip go out as one packet.

Semantics are redis-py's: an idle connection with something to read (the server closed it) is replaced
before use, as the pool does; an error reply is raised as ``ResponseError`` (after every reply of the round
trip has been read, so the connection stays in step); a connection error or timeout is retried by the
connection's ``Retry`` policy on a fresh connection, as a pipeline is, and then raised.
"""
from __future__ import annotations

import os
import select
import threading
import weakref

from redis.exceptions import NoScriptError, ResponseError

_directs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


class Direct:
    """One connection per thread to the server of a ``redis.ConnectionPool``."""

    def __init__(self, pool):
        self._pool = pool
        self._local = threading.local()

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.pid != os.getpid():  # none yet in this thread, or inherited across a fork
            conn = self._local.conn = self._pool.connection_class(**self._pool.connection_kwargs)
            return conn
        # As the pool checks a connection it hands out: something to read on an idle connection (the server
        # closed it, or a reply nobody read) means starting again on a fresh one. A poll of the socket, not
        # redis-py's can_read(), which costs as much as the round trip itself.
        sock = conn._sock
        if sock is not None:
            poller = select.poll()
            poller.register(sock, select.POLLIN | select.POLLPRI)
            if poller.poll(0):
                conn.disconnect()
        return conn

    def execute(self, *commands: tuple) -> list:
        """Send ``commands`` (each a tuple such as ``("INCR", key)``) in one round trip; their replies,
        unparsed (bytes, ints, lists)."""
        conn = self._connection()

        def round_trip():
            conn.send_packed_command(conn.pack_commands(commands))
            replies = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
            return replies

        replies = conn.retry.call_with_retry(round_trip, lambda error: conn.disconnect())
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies

    def evalsha(self, script, keys: list, args: list):
        """Run a ``redis.commands.core.Script`` (``client.register_script``), loading it on a server that
        does not know it yet, as the script object itself does."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return self.execute(command)[0]
        except NoScriptError:
            self.execute(("SCRIPT", "LOAD", script.script))
            return self.execute(command)[0]


def direct(client) -> Direct:
    """The :class:`Direct` commands for a ``redis.Redis`` client (or its ``ConnectionPool``)."""
    pool = getattr(client, "connection_pool", client)
    found = _directs.get(pool)
    if found is None:
        with _lock:
            found = _directs.get(pool)
            if found is None:
                found = _directs[pool] = Direct(pool)
    return found
