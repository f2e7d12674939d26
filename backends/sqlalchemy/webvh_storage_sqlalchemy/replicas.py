"""Read replicas: which database a read goes to, on both faces of a SQL store.

With `read_urls` (DATABASE_READ_URLS, comma separated) gets, lists, counts and streams go
to the replicas in turn (round-robin), everything else to the primary. Each replica has
its own engine and pool per face (the same pool_size + max_overflow as the primary's,
against its own server). `ReadPolicy` holds the rules below and each replica's health,
shared by the store's two faces; `ReadRouter` (here) and `AsyncReadRouter`
(async_replicas.py) run a read where it says.

A read goes to the primary instead when
- it runs inside `primary()` (the caller needs the latest data);
- the same caller (thread, or async task) wrote through this store within the last
  `replica_max_lag + replica_check_interval` seconds: a replica used is at most that far
  behind, so the caller reads its own writes;
- no replica is usable: each one's lag (how old the last transaction it replayed is,
  0 when it has replayed all it received) is checked at most every
  `replica_check_interval` seconds, and one lagging more than `replica_max_lag`
  (STORAGE_REPLICA_MAX_LAG) or failing to answer is skipped until a later check finds it
  back in shape;
- the replica it was sent to failed: the read runs once more on the primary (a stream
  only if it had not yielded a record yet). Not when the worker's own pool for the
  replica had no connection free within pool_timeout: that is the caller's wait used up
  (BackendUnavailableError), and says nothing about the replica.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from storage_core.config import Settings, mask_url
from storage_core.errors import BackendUnavailableError, ValidationError
from webvh_storage_sqlalchemy.connections import Connections
from webvh_storage_sqlalchemy.dialects import dialect_for
from webvh_storage_sqlalchemy.errors import translate

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_MAX_LAG_S = 5.0
DEFAULT_CHECK_INTERVAL_S = 1.0
#: Seconds behind the primary: 0 when everything received is replayed (an idle primary
#: sends nothing, so the age of the last replayed transaction alone would look like lag).
LAG_SQL = (
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0"
    " WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
    " ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END"
)


def read_urls(settings: Settings) -> tuple[str, ...]:
    """`read_urls=` (a list or a comma separated string), else DATABASE_READ_URLS."""
    raw = settings.option("read_urls", "DATABASE_READ_URLS")
    if raw is None:
        return ()
    parts = raw.split(",") if isinstance(raw, str) else [str(u) for u in raw]
    return tuple(p.strip() for p in parts if p.strip())


def _seconds(settings: Settings, name: str, env_name: str, default: float) -> float:
    raw = settings.option(name, env_name, default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValidationError(env_name, f"must be a number of seconds, got {raw!r}") from None
    if not value >= 0:  # also NaN
        raise ValidationError(env_name, f"must be 0 or more seconds, got {raw!r}")
    return value


class ReplicaHealth:
    """Whether reads may go to one replica right now: the rules both faces share (each
    face asks its own pool to the replica, see Replica and async_replicas)."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.masked_url = mask_url(url)
        password = make_url(url).password
        self.secrets = [str(password)] if password else []
        self.dialect = dialect_for(replace(settings, url=url))
        if self.dialect.name != "postgresql":
            raise ValidationError(
                "DATABASE_READ_URLS", f"read replicas must be PostgreSQL, got {self.masked_url!r}"
            )
        self.usable = True
        self.next_check = 0.0  # monotonic time of the next lag check
        self._checking = threading.Lock()

    def check_due(self, now: float, interval: float, saturated: bool) -> bool:
        """True when the caller is to check the lag now (then it calls `checked`): it is
        time, nobody else is checking (the others meanwhile go by the last result), and
        the face's pool has a connection free (else check on a later read, not wait)."""
        if now < self.next_check or saturated:
            return False
        if not self._checking.acquire(blocking=False):
            return False
        self.next_check = now + interval
        return True

    def checked(self, lag: float | None, error: Exception | None, max_lag: float) -> None:
        """The check's outcome: the lag found, or the error it met (neither: it was
        interrupted, and the last result stands)."""
        try:
            if lag is not None:
                if lag:
                    log.info("read replica %s is %.3f s behind", self.masked_url, lag)
                self.usable = lag <= max_lag
            elif error is not None and not pool_exhausted(error):
                # pool exhausted: busy after all, which says nothing about the replica
                self.usable = False
                log.warning(
                    "read replica %s unavailable: %s", self.masked_url, type(error).__name__
                )
        finally:
            self._checking.release()

    def failed(self, now: float) -> None:
        """A read here failed: skip it until the next check finds it answering."""
        self.usable = False
        self.next_check = now


def lag_of(row: Sequence[Any] | None) -> float:
    """Seconds behind, from LAG_SQL's row."""
    return float(row[0]) if row is not None and row[0] is not None else 0.0


class ReadPolicy:
    """Where the next read goes, for either face: the replicas' health, the caller's
    wishes (primary(), its recent writes) and the round-robin turn. A store's two faces
    share one, so a check by one serves both and a caller's write counts on either."""

    def __init__(self, settings: Settings) -> None:
        self.max_lag = _seconds(
            settings, "replica_max_lag", "STORAGE_REPLICA_MAX_LAG", DEFAULT_MAX_LAG_S
        )
        self.check_interval = _seconds(
            settings,
            "replica_check_interval",
            "STORAGE_REPLICA_CHECK_INTERVAL",
            DEFAULT_CHECK_INTERVAL_S,
        )
        self.replicas = [ReplicaHealth(url, settings) for url in read_urls(settings)]
        self._turn = itertools.count()
        # per caller: a thread, or an async task (each runs in its own context)
        self._primary_until: contextvars.ContextVar[float] = contextvars.ContextVar(
            "webvh_storage_primary_until", default=0.0
        )
        self._pinned: contextvars.ContextVar[int] = contextvars.ContextVar(
            "webvh_storage_primary_pinned", default=0
        )

    @contextmanager
    def primary_only(self) -> Iterator[None]:
        """Reads inside the block go to the primary."""
        token = self._pinned.set(self._pinned.get() + 1)
        try:
            yield
        finally:
            self._pinned.reset(token)

    def wrote(self) -> None:
        """The caller just wrote: its reads go to the primary until any replica in use
        must have replayed the write."""
        if self.replicas:
            window = self.max_lag + self.check_interval
            self._primary_until.set(time.monotonic() + window)

    def turn(self) -> list[int] | None:
        """The replicas (by index) to try in turn for the next read, or None: the
        primary's (no replicas, inside primary(), or the caller wrote lately)."""
        if not self.replicas or self._pinned.get():
            return None
        if time.monotonic() < self._primary_until.get():
            return None
        start, count = next(self._turn), len(self.replicas)
        return [(start + step) % count for step in range(count)]

    def replica_failed(self, replica: ReplicaHealth, exc: Exception) -> None:
        """A read on `replica` failed: it is skipped if the server did not answer; the
        caller runs the read on the primary."""
        error = translate(exc, self.secrets, action="reading from a replica")
        if isinstance(error, BackendUnavailableError):
            replica.failed(time.monotonic())
        log.warning("read on replica %s failed, using the primary: %s", replica.masked_url, error)

    @property
    def secrets(self) -> list[str]:
        """The replicas' URL passwords, to mask in every message."""
        return [secret for replica in self.replicas for secret in replica.secrets]

    def describe(self) -> Sequence[dict[str, Any]]:
        return [{"url": r.masked_url, "usable": r.usable} for r in self.replicas]


class Replica:
    """One read replica on the sync face: its pool, and its health."""

    def __init__(self, health: ReplicaHealth) -> None:
        self.health = health
        self.connections = Connections(health.dialect)

    @property
    def usable(self) -> bool:
        return self.health.usable

    def recheck_due(self, now: float, policy: ReadPolicy) -> None:
        if not self.health.check_due(now, policy.check_interval, self.connections.saturated()):
            return
        lag: float | None = None
        error: Exception | None = None
        try:
            lag = lag_of(self.connections.fetch_one(LAG_SQL, ()))
        except Exception as exc:
            error = exc
        finally:
            self.health.checked(lag, error, policy.max_lag)


class ReadRouter:
    """Sends the sync face's reads to a replica or to the primary (see the module
    docstring)."""

    def __init__(self, primary: Connections, settings: Settings) -> None:
        self.primary = primary
        self.policy = ReadPolicy(settings)
        self.replicas: list[Replica] = []
        try:
            for health in self.policy.replicas:
                self.replicas.append(Replica(health))
        except BaseException:
            self.close()
            raise

    # --- the caller's wishes -------------------------------------------------------------
    def primary_only(self) -> AbstractContextManager[None]:
        """Reads inside the block go to the primary."""
        return self.policy.primary_only()

    def wrote(self) -> None:
        self.policy.wrote()

    # --- routing -----------------------------------------------------------------------
    def choose(self) -> Replica | None:
        """The replica for the next read, or None for the primary."""
        turn = self.policy.turn()
        if turn is None:
            return None
        now = time.monotonic()
        for index in turn:
            replica = self.replicas[index]
            replica.recheck_due(now, self.policy)
            if replica.usable:
                return replica
        return None

    def read(self, work: Callable[[Connections], T]) -> T:
        """`work` on a replica's connections, or the primary's; on the primary once more
        if the replica failed."""
        replica = self.choose()
        if replica is None:
            return work(self.primary)
        try:
            return work(replica.connections)
        except Exception as exc:
            if pool_exhausted(exc):
                raise
            self.policy.replica_failed(replica.health, exc)
        return work(self.primary)

    def fetch_one(self, sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        """One row of a read, routed like read(); without replicas straight to the
        primary, with no closure made per call (a get by key is where that shows)."""
        if not self.replicas:
            return self.primary.fetch_one(sql, params)
        return self.read(lambda c: c.fetch_one(sql, params))

    def fetch_all(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        """Every row of a read, routed like fetch_one()."""
        if not self.replicas:
            return self.primary.fetch_all(sql, params)
        return self.read(lambda c: c.fetch_all(sql, params))

    def stream(self, work: Callable[[Connections], Iterator[T]]) -> Iterator[T]:
        """Like read(), for a stream: falls back only before its first record."""
        replica = self.choose()
        if replica is None:
            yield from work(self.primary)
            return
        started = False
        try:
            for item in work(replica.connections):
                started = True
                yield item
            return
        except Exception as exc:
            if started or pool_exhausted(exc):
                raise
            self.policy.replica_failed(replica.health, exc)
        yield from work(self.primary)

    @property
    def secrets(self) -> list[str]:
        return self.policy.secrets

    def describe(self) -> Sequence[dict[str, Any]]:
        return self.policy.describe()

    def close(self) -> None:
        for replica in self.replicas:
            replica.connections.close()


def pool_exhausted(exc: Exception) -> bool:
    """No pooled connection within pool_timeout (SQLAlchemy's TimeoutError)."""
    return isinstance(exc, sa_exc.TimeoutError)
