"""Group commit for audit records: concurrent requests share one transaction (and one fsync).

A request's response is held until its record is committed, so every answer a client saw is in
the trail. One thread per process appends; the head row orders appenders of several processes.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading

import sqlalchemy as sa

from farthing.audit._record import AuditRecord
from farthing.audit._store import APPEND_BATCH_SIZE_MAX, append
from farthing.db.engine import begin_write

__all__ = ["QUEUE_SIZE_MAX", "AuditWriter"]

QUEUE_SIZE_MAX = 10_000
_log = logging.getLogger("farthing.audit")

_Item = tuple[AuditRecord, "concurrent.futures.Future[int]"]


class AuditWriter:
    def __init__(self, engine: sa.Engine, *, key: bytes) -> None:
        self._engine = engine
        self._key = key
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=QUEUE_SIZE_MAX)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def try_submit(self, record: AuditRecord) -> concurrent.futures.Future[int] | None:
        """The record's future seq, resolved once it is committed; None when the queue is full
        (the caller then writes it itself with ``write_now``: back-pressure, never a drop)."""
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._ensure_started()
        try:
            self._queue.put_nowait((record, future))
        except queue.Full:
            return None
        return future

    def write_now(self, records: list[AuditRecord]) -> int:
        """Append in the caller's thread (operators' commands, which run without the writer)."""
        with begin_write(self._engine) as connection:
            return append(connection, self._key, records)

    def stop(self) -> None:
        """Commit what is queued, then end the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)  # The stop mark, after what is queued.
            thread.join()

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < APPEND_BATCH_SIZE_MAX:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Item]) -> None:
        try:
            head = self.write_now([record for record, _ in batch])
        except Exception as error:  # noqa: BLE001 - every waiter must hear of the failure
            _log.exception("audit append failed; %d records not written", len(batch))
            for _, future in batch:
                future.set_exception(error)
            return
        first_seq = head - len(batch) + 1
        for offset, (_, future) in enumerate(batch):
            future.set_result(first_seq + offset)
