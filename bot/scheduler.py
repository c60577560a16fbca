"""The service's clockwork: a poll every PAPERBOT_POLL_MINUTES, a look for due pushes every minute."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import cast

from bot.app import Components
from bot.delivery import PushBusy, PushReport, now_utc, push_once
from bot.models import Platform
from bot.poller import Poller, PollReport
from bot.sender import Sender

log = logging.getLogger(__name__)

# A new subscription gets its backfill from a poll this soon, not at the next regular poll.
EARLY_POLL_GAP = timedelta(minutes=2)


class Scheduler:
    def __init__(
        self,
        c: Components,
        senders: Mapping[Platform, Sender],
        *,
        clock: Callable[[], datetime] = now_utc,
        tick: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.c = c
        self.senders = senders
        self.clock = clock
        self.tick = tick  # seconds between looks for due pushes
        self.rng = rng  # jitter of delivery retries; None: none
        self.poller = Poller(c, clock=clock)
        self._poll_task: asyncio.Task[None] | None = None
        self._next_poll: datetime | None = None
        self._last_poll: datetime | None = None
        self._subscriptions_polled = 0  # the newest subscription id the last poll saw
        self._stop: asyncio.Event | None = None  # run's: a push starts no new message once it is set

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set. A poll runs in the background, so a long one (many summaries)
        does not hold up the pushes; a failure is logged and recorded, and the loop goes on."""
        self._stop = stop
        try:
            while not stop.is_set():
                await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tick)
        finally:
            if self._poll_task is not None and not self._poll_task.done():
                self._poll_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._poll_task

    async def step(self) -> None:
        """Start a poll if one is due, then send the pushes that are due."""
        self.c.metrics.beat("scheduler", self.tick)  # /healthz: this loop is alive
        started, report = time.monotonic(), cast("PushReport | None", None)
        try:
            now = self.clock()
            idle = self._poll_task is None or self._poll_task.done()
            if idle and await self._poll_due(now):
                self._last_poll = now
                self._subscriptions_polled = await self.c.store.newest_subscription_id()
                self._next_poll = now + timedelta(minutes=self.c.settings.poll_minutes)
                self._poll_task = asyncio.create_task(self._poll(), name="paperbot-poll")
            stop = self._stop
            # Not waiting for another process's push: this loop must go on beating (/healthz), and
            # whatever is due once that push ends is found at the next tick.
            report = await push_once(
                self.c, senders=self.senders, clock=self.clock, rng=self.rng, wait=False,
                stopping=stop.is_set if stop is not None else lambda: False,
                progress=lambda: self.c.metrics.beat("scheduler", self.tick),
            )
            if report.eventful:
                log.info("push: %s", report)
        except PushBusy:
            log.debug("push: another process is pushing on this database")
        except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
            await self._failed("push", exc)
        self.c.metrics.push_done(report, time.monotonic() - started)

    async def _poll_due(self, now: datetime) -> bool:
        if self._next_poll is None or now >= self._next_poll:
            return True
        assert self._last_poll is not None
        return (
            now >= self._last_poll + EARLY_POLL_GAP
            and await self.c.store.newest_subscription_id() > self._subscriptions_polled
        )

    async def _poll(self) -> None:
        started, report = time.monotonic(), cast("PollReport | None", None)
        try:
            report = await self.poller.run_once()
            log.info("poll: %s", report)
        except Exception as exc:  # noqa: BLE001
            await self._failed("poll", exc)
        self.c.metrics.poll_done(report, time.monotonic() - started)

    async def _failed(self, kind: str, exc: Exception) -> None:
        log.exception("%s failed", kind)
        with contextlib.suppress(Exception):  # a broken database must not end the loop either
            await self.c.store.record_failure(kind, f"{type(exc).__name__}: {exc}")
