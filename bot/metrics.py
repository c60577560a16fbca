"""Prometheus metrics and liveness of one paperbot process, kept in one object (no global registry).

`Metrics` owns its own CollectorRegistry, so two processes' worth of components in one test (or
one interpreter) never share counters. The service records at its edges: the scheduler hands
over the PollReport and PushReport it gets back, `MeteredSender` wraps each chat platform's
Sender, the adapters count each chat command, the SummaryService calls `summary()`, and an LLM
backend calls `llm_call()`. Label values are names chosen by the code (platform, command,
backend, outcome, status); never a chat id, a user id, a token or a query.

`serve_metrics` runs `/metrics` and `/healthz` with aiohttp on the running event loop
(SPEC: PAPERBOT_METRICS_LISTEN).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.models import Chat, MatchReason, Paper, Platform, Summary
from bot.sender import ChatGone, ChatMoved, Sender

log = logging.getLogger(__name__)


class PollReport(Protocol):
    """What the metrics read of a poll's report (bot.poller.PollReport); named here so that the
    metrics, which the app builds first, do not import the poller."""

    listed: int
    matched: int


class PushReport(Protocol):
    """What the metrics read of a push's report (bot.delivery.PushReport)."""

    papers: int
    listed: int
    failures: int
    switched_off: int

# Polls take seconds (a quiet day) to many minutes (a big announcement, each match summarized).
POLL_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
PUSH_BUCKETS = (0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
STALE_TICKS = 3  # a loop that has not beaten for this many of its ticks is dead (issue 13)
DB_TIMEOUT = 5.0  # seconds /healthz waits for `SELECT 1`


class Metrics:
    """The process's counters, histograms and gauges, and the heartbeats of its loops.

    `clock` is a monotonic clock in seconds (injectable for tests of staleness).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.registry = CollectorRegistry()
        r = self.registry
        self.papers_polled = Counter(
            "paperbot_papers_polled", "Papers in the arXiv listings that the poller processed", registry=r
        )
        self.papers_matched = Counter("paperbot_papers_matched", "Papers that matched at least one topic", registry=r)
        self.polls = Counter("paperbot_polls", "Poll cycles by outcome (ok, failed)", ["outcome"], registry=r)
        self.poll_seconds = Histogram(
            "paperbot_poll_duration_seconds", "Duration of a poll cycle", buckets=POLL_BUCKETS, registry=r
        )
        self.push_seconds = Histogram(
            "paperbot_push_duration_seconds", "Duration of one look for due pushes and their sends",
            buckets=PUSH_BUCKETS, registry=r,
        )
        self.papers_pushed = Counter(
            "paperbot_papers_pushed", "Papers pushed to chats, as full posts (post) or in the compact list (list)",
            ["form"], registry=r,
        )
        self.push_failures = Counter(
            "paperbot_push_failures", "Push sends that failed and will be tried again", registry=r
        )
        self.chats_switched_off = Counter(
            "paperbot_chats_switched_off", "Chats switched off because they blocked or removed the bot", registry=r
        )
        self.messages = Counter(
            "paperbot_messages_sent",
            "Push messages (digest header, paper post, paper list) by platform, kind and outcome "
            "(ok, chat_gone, chat_moved, error)",
            ["platform", "kind", "outcome"], registry=r,
        )
        self.requests = Counter(
            "paperbot_requests", "Chat commands and buttons received, by platform and command",
            ["platform", "command"], registry=r,
        )
        self.summaries = Counter(
            "paperbot_summaries", "Summaries produced by backend (model key) and outcome (ok, failed)",
            ["backend", "outcome"], registry=r,
        )
        self.llm_tokens = Counter(
            "paperbot_llm_tokens", "LLM tokens by model and direction (input, output)",
            ["model", "direction"], registry=r,
        )
        # Set from the store right before each scrape (`refresh`): the ledger as it is now.
        self.deliveries = Gauge(
            "paperbot_deliveries", "Rows of the delivery ledger by status (pending, sending, sent, failed, ...)",
            ["status"], registry=r,
        )
        self.loop_age = Gauge(
            "paperbot_loop_heartbeat_age_seconds", "Seconds since each service loop last beat", ["loop"], registry=r
        )
        self._beats: dict[str, tuple[float, float]] = {}  # loop -> (last beat, tick in seconds)

    # --- the edges ---------------------------------------------------------------------------

    def poll_done(self, report: PollReport | None, seconds: float) -> None:
        """A poll cycle ended after `seconds`; `report` is None when it raised."""
        self.poll_seconds.observe(seconds)
        self.polls.labels("failed" if report is None else "ok").inc()
        if report is not None:
            self.papers_polled.inc(report.listed)
            self.papers_matched.inc(report.matched)

    def push_done(self, report: PushReport | None, seconds: float) -> None:
        """One look for due pushes ended after `seconds`; `report` is None when it raised."""
        self.push_seconds.observe(seconds)
        if report is not None:
            self.papers_pushed.labels("post").inc(report.papers)
            self.papers_pushed.labels("list").inc(report.listed)
            self.push_failures.inc(report.failures)
            self.chats_switched_off.inc(report.switched_off)

    def request(self, platform: Platform | str, command: str) -> None:
        """A chat command (`summary`, `help`, ...) or button (`breakdown`) arrived."""
        self.requests.labels(_platform(platform), command).inc()

    def summary(self, backend: str, outcome: str) -> None:
        """A summarizer call ended: `backend` is its model key, `outcome` ok or failed."""
        self.summaries.labels(backend, outcome).inc()

    def llm_call(self, model: str, input_tokens: int | None, output_tokens: int | None) -> None:
        """One LLM call's usage, as the API reported it (None when it did not)."""
        if input_tokens:
            self.llm_tokens.labels(model, "input").inc(input_tokens)
        if output_tokens:
            self.llm_tokens.labels(model, "output").inc(output_tokens)

    # --- liveness ----------------------------------------------------------------------------

    def beat(self, loop: str, tick: float) -> None:
        """`loop` is alive; it beats about every `tick` seconds."""
        self._beats[loop] = (self.clock(), tick)

    def stale_loops(self) -> list[str]:
        """The loops that have not beaten for more than STALE_TICKS of their ticks."""
        now = self.clock()
        return sorted(name for name, (at, tick) in self._beats.items() if now - at > STALE_TICKS * tick)

    # --- scraping ----------------------------------------------------------------------------

    def refresh(self, delivery_counts: Mapping[str, int]) -> None:
        """Set the scrape-time gauges: the ledger's rows by status, the loops' heartbeat ages."""
        self.deliveries.clear()
        for status, count in delivery_counts.items():
            self.deliveries.labels(status).set(count)
        now = self.clock()
        for name, (at, _tick) in self._beats.items():
            self.loop_age.labels(name).set(now - at)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


def _platform(platform: Platform | str) -> str:
    return platform.value if isinstance(platform, Platform) else str(platform)


# --- a Sender that counts -----------------------------------------------------------------------


class MeteredSender:
    """Wraps any Sender; counts each push message by platform, kind and outcome, and re-raises."""

    def __init__(self, inner: Sender, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.platform = inner.platform

    async def send_header(self, chat: Chat, title: str, day: date, count: int) -> None:
        async with self._count("header"):
            await self.inner.send_header(chat, title, day, count)

    async def send_paper(
        self, chat: Chat, summary: Summary, images: list[Path], why: Sequence[MatchReason] | None = None
    ) -> None:
        async with self._count("paper"):
            await self.inner.send_paper(chat, summary, images, why=why)

    async def send_paper_list(self, chat: Chat, papers: list[Paper]) -> None:
        async with self._count("list"):
            await self.inner.send_paper_list(chat, papers)

    @contextlib.asynccontextmanager
    async def _count(self, kind: str) -> AsyncIterator[None]:
        outcome = "error"
        try:
            yield
            outcome = "ok"
        except ChatGone:
            outcome = "chat_gone"
            raise
        except ChatMoved:
            outcome = "chat_moved"
            raise
        finally:
            self.metrics.messages.labels(_platform(self.platform), kind, outcome).inc()


# --- the HTTP side ------------------------------------------------------------------------------


@dataclass
class Probe:
    """What /metrics and /healthz ask the store: `ping` raises when the database does not answer,
    `delivery_counts` is the ledger's rows by status."""

    ping: Callable[[], Awaitable[Any]]
    delivery_counts: Callable[[], Awaitable[Mapping[str, int]]]


def metrics_app(metrics: Metrics, probe: Probe) -> web.Application:
    async def get_metrics(request: web.Request) -> web.Response:
        try:
            counts = await asyncio.wait_for(probe.delivery_counts(), DB_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - the counters are still worth a scrape without the database
            log.warning("metrics: no delivery counts from the database: %s", type(exc).__name__)
            counts = {}
        metrics.refresh(counts)
        # CONTENT_TYPE_LATEST carries its own charset; aiohttp wants it in the header as is.
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def get_healthz(request: web.Request) -> web.Response:
        problems = []
        try:
            await asyncio.wait_for(probe.ping(), DB_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - any failure to answer is "unhealthy"
            problems.append(f"database: {type(exc).__name__}")
        problems += [f"loop {name}: no heartbeat" for name in metrics.stale_loops()]
        body = {"status": "fail" if problems else "ok", "problems": problems}
        return web.json_response(body, status=503 if problems else 200)

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", get_healthz)
    return app


@contextlib.asynccontextmanager
async def serve_metrics(metrics: Metrics, probe: Probe, host: str, port: int) -> AsyncIterator[int]:
    """Serve /metrics and /healthz on host:port until the block ends; yields the bound port."""
    runner = web.AppRunner(metrics_app(metrics, probe), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        server = site._server  # aiohttp keeps the bound sockets there; port 0 picks a free one
        bound = server.sockets[0].getsockname()[1] if server is not None and server.sockets else port
        log.info("metrics and health on http://%s:%d/metrics and /healthz", host, bound)
        yield bound
    finally:
        await runner.cleanup()
