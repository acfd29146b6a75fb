"""Group commit: the DATA transactions that arrive together are stored in one database commit.

One commit costs about the same for one message as for fifty (an fsync on SQLite with
`synchronous = FULL`, a WAL flush on PostgreSQL). So the first DATA is stored at once, and
whatever arrives while that commit runs waits and goes in the next one: no client waits for
a timer, and eight clients no longer queue behind seven commits each. Every DATA handler awaits
its own future, which is resolved only after the batch holding it has committed (SPEC §7: 250
only after durable storage); a batch that fails fails its own transactions only (451 to them).
"""

from __future__ import annotations

import asyncio
import logging

from listserv.store.engine import Store

from .store import Received, store_messages

#: At most this many transactions, and (beyond the first) this many bytes, in one commit: a
#: bound on one write transaction's length and on the memory of a failed batch's retry by the MTA.
MAX_BATCH_MESSAGES = 100
MAX_BATCH_BYTES = 32 * 1024 * 1024

log = logging.getLogger(__name__)


class GroupCommit:
    """Stores received transactions in batches, one writer at a time, on one event loop."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._waiting: list[tuple[Received, asyncio.Future[list[int]]]] = []
        self._writer: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """How many transactions wait for the next commit (not the one running now)."""
        return len(self._waiting)

    async def store_message(self, received: Received) -> list[int]:
        """Store `received` with whatever else is waiting; its row ids once committed.

        Raises what the batch's commit raised: nothing of that batch is stored then.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        self._waiting.append((received, future))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_waiting())
        return await future

    async def _write_waiting(self) -> None:
        """Commit batches until nothing waits; arrivals during a commit join the next one."""
        while self._waiting:
            batch = self._next_batch()
            log.debug("storing %d messages in one transaction", len(batch))
            try:
                ids = await asyncio.to_thread(store_messages, self.store, [r for r, _ in batch])
            except Exception as exc:
                log.warning("a batch of %d messages was not stored: %s", len(batch), exc)
                for _, future in batch:
                    if not future.done():  # a client that hung up no longer waits
                        future.set_exception(exc)
                continue
            for (_, future), rows in zip(batch, ids, strict=True):
                if not future.done():
                    future.set_result(rows)

    def _next_batch(self) -> list[tuple[Received, asyncio.Future[list[int]]]]:
        """The oldest waiting transactions, within the batch bounds (always at least one)."""
        size = 0
        count = 0
        for received, _ in self._waiting:
            full = count >= MAX_BATCH_MESSAGES or size + len(received.raw) > MAX_BATCH_BYTES
            if count and full:
                break
            size += len(received.raw)
            count += 1
        batch, self._waiting = self._waiting[:count], self._waiting[count:]
        return batch
