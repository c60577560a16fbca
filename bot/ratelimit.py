"""One limiter for every request to arXiv in this process (API, listing feeds, PDFs).

arXiv asks for no more than one request every three seconds. The `arxiv` package keeps its
own delay per Client object, which neither covers our other requests nor survives two
clients, so a single limiter is built at start and handed to everything that talks to arXiv.
It hands out time slots under a thread lock, so worker threads (the synchronous `arxiv`
package) and coroutines share one schedule.
"""

from __future__ import annotations

import asyncio
import threading
import time


class RateLimiter:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._next = 0.0  # monotonic time of the next free slot
        self.requests = 0

    def _reserve(self) -> float:
        """Claim the next slot; return how long the caller must wait for it."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
            self.requests += 1
            return slot - now

    def wait_sync(self) -> None:
        delay = self._reserve()
        if delay > 0:
            time.sleep(delay)

    async def wait(self) -> None:
        delay = self._reserve()
        if delay > 0:
            await asyncio.sleep(delay)
