"""A background task that lives exactly as long as a block of code."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable


@contextlib.asynccontextmanager
async def running(job: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """Run `job()` as a task while the block runs; cancel it and wait for it when the block ends.

    For the loops that keep something alive while work goes on: a claim's heartbeat, a chat's
    "typing…". The job's own errors are its business (it loops and logs); a cancelled job is
    awaited so that it never outlives the block.
    """
    task = asyncio.create_task(job())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
