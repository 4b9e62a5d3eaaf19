"""Group commit: coalesce concurrent requests into one database transaction.

Requests queue up while a commit is running; the next commit takes as many as fit in one batch
(by event count). One fsync then acknowledges many clients, so throughput is not capped by one
commit per transfer. Each request still gets exactly its own results.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib

from farthing.ledger import BATCH_EVENTS_MAX
from farthing.ledger_service._requests import Outcome, WriteRequest, request_size
from farthing.ledger_service._writer import LedgerWriter

__all__ = ["GroupCommitter", "OverloadedError"]

QUEUE_REQUESTS_MAX = 65_536
EXPIRY_SWEEP_INTERVAL_S = 1.0


class OverloadedError(Exception):
    """The commit queue is full; the client should retry later."""


class GroupCommitter:
    """Runs commits one at a time on a dedicated thread; use from one event loop."""

    def __init__(
        self, writer: LedgerWriter, *, events_per_commit_max: int = BATCH_EVENTS_MAX
    ) -> None:
        assert 0 < events_per_commit_max <= BATCH_EVENTS_MAX
        self._writer = writer
        self._events_max = events_per_commit_max
        self._queue: asyncio.Queue[tuple[WriteRequest, asyncio.Future[Outcome]]] = asyncio.Queue(
            QUEUE_REQUESTS_MAX
        )
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "farthing-commit")
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    async def start(self) -> None:
        assert self._task is None
        self._task = asyncio.create_task(self._run(), name="farthing-group-commit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    async def submit(self, request: WriteRequest) -> Outcome:
        """Queue a request and wait until the commit holding it is durable."""
        assert 0 < request_size(request) <= self._events_max
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((request, future))
        except asyncio.QueueFull:
            raise OverloadedError from None
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        pending: tuple[WriteRequest, asyncio.Future[Outcome]] | None = None
        while True:
            if pending is None:
                try:
                    pending = await asyncio.wait_for(self._queue.get(), EXPIRY_SWEEP_INTERVAL_S)
                except TimeoutError:
                    # Idle: release expired holds even when nobody writes.
                    await loop.run_in_executor(self._executor, self._writer.commit, [])
                    continue
            group = [pending]
            pending = None
            size = request_size(group[0][0])
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if size + request_size(item[0]) > self._events_max:
                    pending = item
                    break
                group.append(item)
                size += request_size(item[0])
            await self._commit(loop, group)

    async def _commit(
        self,
        loop: asyncio.AbstractEventLoop,
        group: list[tuple[WriteRequest, asyncio.Future[Outcome]]],
    ) -> None:
        requests = [request for request, _ in group]
        try:
            outcomes = await loop.run_in_executor(self._executor, self._writer.commit, requests)
        except Exception as error:  # noqa: BLE001 - every waiter must hear about the failure.
            if len(group) == 1:
                if not group[0][1].done():
                    group[0][1].set_exception(error)
                return
            # One request must not fail its neighbours: commit each alone, so only the request
            # that cannot commit hears about the error.
            for item in group:
                await self._commit(loop, [item])
            return
        self.commits += 1
        assert len(outcomes) == len(group)
        for (_, future), outcome in zip(group, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)
