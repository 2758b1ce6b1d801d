"""Django's PostgreSQL backend, with a per-request health check that costs no round trip when the
connection's socket already answers it.

With ``CONN_HEALTH_CHECKS`` Django sends ``SELECT 1`` before the first query of every request on a
reused connection: under the volunteer load benchmark a round trip per request, for PostgreSQL a
statement per request. A connection that PostgreSQL closed (a restart, ``pg_terminate_backend``, an
idle timeout) has its termination notice or end-of-file waiting on the socket, and libpq knows whether
the connection is idle, so an idle connection with nothing to read is taken as healthy without asking
the server. Anything else (something to read, a transaction open or failed, libpq not OK) gets Django's
own ``SELECT 1``, as does the check after an error (``close_if_unusable_or_obsolete``).
"""
from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg import pq


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self):
        if (self.connection is not None and self.health_check_enabled and not self.health_check_done
                and self._idle_and_quiet()):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def _idle_and_quiet(self) -> bool:
        pgconn = self.connection.pgconn
        if pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status != pq.TransactionStatus.IDLE:
            return False
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
