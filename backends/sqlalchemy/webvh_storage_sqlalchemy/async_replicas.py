"""Read replicas on the async face: `AsyncReadRouter` runs each read where the store's
`replicas.ReadPolicy` says (the rules, the replicas' health and the caller's wishes are
that one object, shared with the sync face); only the I/O here is the async face's own,
on an `AsyncConnections` pool per replica (the same pool_size + max_overflow as the
primary's, against the replica's server).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from webvh_storage_sqlalchemy.async_connections import AsyncConnections
from webvh_storage_sqlalchemy.async_drivers import driver_for
from webvh_storage_sqlalchemy.replicas import (
    LAG_SQL,
    ReadPolicy,
    ReplicaHealth,
    lag_of,
    pool_exhausted,
)

T = TypeVar("T")
Rows = Sequence[Sequence[Any]]


class AsyncReplica:
    """One read replica on the async face: its pool, and its (shared) health."""

    def __init__(self, health: ReplicaHealth) -> None:
        self.health = health
        self.connections = AsyncConnections(health.dialect, driver_for(health.dialect))

    async def recheck_due(self, now: float, policy: ReadPolicy) -> None:
        if not self.health.check_due(now, policy.check_interval, self.connections.saturated()):
            return
        lag: float | None = None
        error: Exception | None = None
        try:
            lag = lag_of(await self.connections.fetch_one(LAG_SQL, ()))
        except Exception as exc:
            error = exc
        finally:
            self.health.checked(lag, error, policy.max_lag)


class AsyncReadRouter:
    """Sends the async face's reads to a replica or to the primary (replicas.py)."""

    def __init__(self, primary: AsyncConnections, policy: ReadPolicy) -> None:
        self.primary = primary
        self.policy = policy
        self.replicas: list[AsyncReplica] = [AsyncReplica(h) for h in policy.replicas]

    async def choose(self) -> AsyncReplica | None:
        """The replica for the next read, or None for the primary."""
        turn = self.policy.turn()
        if turn is None:
            return None
        now = time.monotonic()
        for index in turn:
            replica = self.replicas[index]
            await replica.recheck_due(now, self.policy)
            if replica.health.usable:
                return replica
        return None

    async def read(self, work: Callable[[AsyncConnections], Awaitable[T]]) -> T:
        """`work` on a replica's pool, or the primary's; on the primary once more if
        the replica failed (not if its pool had no connection free in time)."""
        replica = await self.choose()
        if replica is None:
            return await work(self.primary)
        try:
            return await work(replica.connections)
        except Exception as exc:
            if pool_exhausted(exc):
                raise
            self.policy.replica_failed(replica.health, exc)
        return await work(self.primary)

    def fetch_one(self, sql: str, params: Sequence[Any]) -> Awaitable[Sequence[Any] | None]:
        """One row of a read, routed like read(). Without replicas: the primary's own
        coroutine, handed back (no closure, no coroutine more per get by key)."""
        if not self.replicas:
            return self.primary.fetch_one(sql, params)
        return self.read(lambda c: c.fetch_one(sql, params))

    def fetch_all(self, sql: str, params: Sequence[Any]) -> Awaitable[Rows]:
        """Every row of a read, routed like fetch_one()."""
        if not self.replicas:
            return self.primary.fetch_all(sql, params)
        return self.read(lambda c: c.fetch_all(sql, params))

    async def stream(
        self, work: Callable[[AsyncConnections], AsyncIterator[T]]
    ) -> AsyncIterator[T]:
        """Like read(), for a stream: falls back only before its first item. Leaving
        early closes the stream in use (its cursor and connection)."""
        replica = await self.choose() if self.replicas else None
        if replica is not None:
            items = work(replica.connections)
            started = False
            try:
                async for item in items:
                    started = True
                    yield item
                return
            except Exception as exc:
                if started or pool_exhausted(exc):
                    raise
                self.policy.replica_failed(replica.health, exc)
            finally:
                await items.aclose()  # type: ignore[attr-defined]
        items = work(self.primary)
        try:
            async for item in items:
                yield item
        finally:
            await items.aclose()  # type: ignore[attr-defined]

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.connections.close()
