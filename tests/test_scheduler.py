"""When pushes are due (time zones, DST days, missed pushes), and the scheduler loop that drives poll and push."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta

import pytest

from bot.app import Components
from bot.delivery import is_due
from bot.models import Chat, ChatKind, Platform
from bot.scheduler import Scheduler
from tests.fakes.arxiv import FakeArxiv
from tests.test_push import MONDAY, RecordingSender, add_papers, subscribe


def chat(tz: str, push_time: str = "09:00", active: bool = True) -> Chat:
    return Chat(Platform.TELEGRAM, "1", ChatKind.PRIVATE, timezone=tz, push_time=push_time, active=active)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("tz", "announced", "before", "at"),
    [
        # New York on Sunday 2026-03-08, when clocks jump from 02:00 EST to 03:00 EDT: 09:00 is 13:00 UTC.
        ("America/New_York", date(2026, 3, 8), utc(2026, 3, 8, 12, 59), utc(2026, 3, 8, 13, 0)),
        # Sunday 2026-11-01, back from 02:00 EDT to 01:00 EST: 09:00 is 14:00 UTC (at midnight it was EDT).
        ("America/New_York", date(2026, 11, 1), utc(2026, 11, 1, 13, 59), utc(2026, 11, 1, 14, 0)),
        # An ordinary Monday in summer: EDT.
        ("America/New_York", date(2026, 6, 1), utc(2026, 6, 1, 12, 59), utc(2026, 6, 1, 13, 0)),
        # Shanghai (UTC+8, no DST): Monday's listing appears at 12:00 there, so the push is Tuesday 09:00.
        ("Asia/Shanghai", date(2026, 3, 9), utc(2026, 3, 10, 0, 59), utc(2026, 3, 10, 1, 0)),
        ("Asia/Shanghai", date(2026, 11, 2), utc(2026, 11, 3, 0, 59), utc(2026, 11, 3, 1, 0)),
    ],
)
def test_due_from_nine_local_and_once(tz: str, announced: date, before: datetime, at: datetime) -> None:
    ch = chat(tz)
    yesterday = announced - timedelta(days=1)
    assert not is_due(ch, yesterday, announced, before)  # 08:59 local
    assert is_due(ch, yesterday, announced, at)  # 09:00 local
    assert is_due(ch, None, announced, at + timedelta(hours=3))  # a chat never pushed before
    assert not is_due(ch, announced, announced, at + timedelta(minutes=1))  # sent: not again


def test_shanghai_is_not_pushed_before_the_listing_exists() -> None:
    # 09:00 in Shanghai on Monday is 21:00 on Sunday in New York: Monday's listing is not out yet.
    assert not is_due(chat("Asia/Shanghai"), date(2026, 3, 6), date(2026, 3, 9), utc(2026, 3, 9, 1, 0))


def test_a_missed_push_goes_out_when_the_bot_comes_back() -> None:
    ny = chat("America/New_York")
    # Down from Monday to Wednesday 03:00 local, before Wednesday's push time: Monday's push is still owed.
    assert is_due(ny, date(2026, 6, 1), date(2026, 6, 2), utc(2026, 6, 3, 7, 0))
    assert not is_due(ny, date(2026, 6, 2), date(2026, 6, 2), utc(2026, 6, 3, 7, 0))


def test_late_push_times_and_odd_zones() -> None:
    # 23:30 in Kolkata (UTC+5:30) after Monday's listing (04:00 UTC): Monday 18:00 UTC.
    kolkata = chat("Asia/Kolkata", "23:30")
    assert not is_due(kolkata, None, date(2026, 6, 1), utc(2026, 6, 1, 17, 59))
    assert is_due(kolkata, None, date(2026, 6, 1), utc(2026, 6, 1, 18, 0))
    # 00:00 in New York is when the listing appears.
    assert is_due(chat("America/New_York", "00:00"), None, date(2026, 6, 1), utc(2026, 6, 1, 4, 0))


def test_not_due_without_an_announcement_or_when_switched_off() -> None:
    assert not is_due(chat("UTC"), None, None, utc(2026, 6, 1, 12, 0))
    assert not is_due(chat("UTC", active=False), None, date(2026, 6, 1), utc(2026, 6, 1, 12, 0))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def eventually(check: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait until `check()` (or what it returns, when it is awaitable) is true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (await result if inspect.isawaitable(result := check()) else result):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running(c: Components, clock: Clock, sender: RecordingSender | None = None) -> AsyncIterator[Scheduler]:
    """A scheduler looping on `clock` (10 ms ticks) until the block ends."""
    scheduler = Scheduler(c, {Platform.TELEGRAM: sender or RecordingSender()}, clock=clock, tick=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        yield scheduler
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_the_scheduler_polls_on_its_interval_and_pushes_at_nine(
    components: Components, fake_arxiv: FakeArxiv
) -> None:
    c = components
    await subscribe(c, "ny", "cat:cs.CV", timezone="America/New_York", push_time="09:00")
    ids = add_papers(fake_arxiv, "20", ["A", "B"])
    fake_arxiv.set_listing("cs.CV", MONDAY, ids)
    clock = Clock(utc(2024, 5, 6, 12, 59))  # 08:59 in New York
    sender = RecordingSender()
    async with running(c, clock, sender) as scheduler:
        await eventually(lambda: fake_arxiv.count("rss") == 1)
        await eventually(lambda: scheduler._poll_task is not None and scheduler._poll_task.done())
        await asyncio.sleep(0.1)
        assert sender.log == []  # polled, but 08:59

        clock.now = utc(2024, 5, 6, 13, 0)
        await eventually(lambda: len(sender.log) == 3)
        assert sender.log[0] == ("header", "ny", "cat:cs.CV — 2024-05-06: 2")

        clock.now = utc(2024, 5, 6, 13, 58)  # 59 minutes after the first poll: no poll yet
        await asyncio.sleep(0.1)
        assert fake_arxiv.count("rss") == 1 and len(sender.log) == 3
        clock.now = utc(2024, 5, 6, 13, 59)  # PAPERBOT_POLL_MINUTES=60 after it
        await eventually(lambda: fake_arxiv.count("rss") == 2)
        await asyncio.sleep(0.1)
        assert len(sender.log) == 3  # the same announcement: not pushed again


async def test_failures_are_recorded_and_do_not_stop_the_loop(components: Components, fake_arxiv: FakeArxiv) -> None:
    c = components
    await subscribe(c, "ny", "cat:cs.CV", timezone="America/New_York")
    fake_arxiv.set_listing("cs.CV", MONDAY, add_papers(fake_arxiv, "20", ["A"]))
    # A database that lost a table: every poll fails inside the store.
    await c.store.execute("DROP TABLE announcements")
    clock = Clock(utc(2024, 5, 6, 14, 0))
    async with running(c, clock) as scheduler:
        await eventually(lambda: scheduler._poll_task is not None and scheduler._poll_task.done())
        failures = await c.store.recent_failures()
        assert [(kind, detail) for _, kind, detail in failures] == [
            ("poll", "OperationalError: no such table: announcements")
        ]

        clock.now += timedelta(hours=1)

        async def two_failures() -> bool:
            return len(await c.store.recent_failures()) == 2

        await eventually(two_failures)  # it polled again


async def test_a_new_subscription_brings_the_next_poll_forward(
    components: Components, fake_arxiv: FakeArxiv
) -> None:
    c = components
    await subscribe(c, "ny", "cat:cs.CV", timezone="America/New_York")
    fake_arxiv.set_listing("cs.CV", MONDAY, add_papers(fake_arxiv, "20", ["A"]))
    clock = Clock(utc(2024, 5, 6, 14, 0))
    async with running(c, clock) as scheduler:
        await eventually(lambda: scheduler._poll_task is not None and scheduler._poll_task.done())
        polls = fake_arxiv.count("rss")
        clock.now += timedelta(minutes=5)
        await asyncio.sleep(0.1)
        assert fake_arxiv.count("rss") == polls  # nothing new: the hourly rhythm holds

        await subscribe(c, "sh", "cat:cs.CV", timezone="Asia/Shanghai")
        clock.now += timedelta(minutes=1)  # 6 minutes after the last poll, not 60
        await eventually(lambda: fake_arxiv.count("rss") == polls + 1)


async def test_a_replica_whose_peer_is_pushing_stays_alive_for_healthz(components: Components) -> None:
    """Another process holds the push lock for a long push: this replica's loop must go on
    beating (it has nothing to push), not wait for the lock inside a step until /healthz calls
    it dead and the orchestrator restarts a healthy replica."""
    c = components
    clock = Clock(utc(2024, 5, 6, 14, 0))
    async with c.store.try_lock("push") as got:
        assert got
        async with running(c, clock):
            await asyncio.sleep(0.5)  # 50 ticks of 10 ms
            assert c.metrics.stale_loops() == []


async def test_a_long_push_keeps_the_loop_alive_while_chats_get_their_papers(
    components: Components, fake_arxiv: FakeArxiv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push to many chats takes longer than the heartbeat's limit (three ticks): each chat done
    is progress, so /healthz does not call the pushing replica dead in the middle of it."""
    import bot.delivery
    from pathlib import Path

    from bot.models import Summary

    monkeypatch.setattr(bot.delivery, "CHAT_CONCURRENCY", 1)
    c = components
    for n in range(5):
        await subscribe(c, f"c{n}", "cat:cs.CV", timezone="UTC", push_time="09:00")
    fake_arxiv.set_listing("cs.CV", MONDAY, add_papers(fake_arxiv, "20", ["A"]))

    class SlowSender(RecordingSender):
        async def send_paper(self, chat: Chat, summary: Summary, images: list[Path], why: object = None) -> None:
            await asyncio.sleep(0.15)
            await super().send_paper(chat, summary, images)

    sender = SlowSender()
    clock = Clock(utc(2024, 5, 6, 8, 0))
    scheduler = Scheduler(c, {Platform.TELEGRAM: sender}, clock=clock, tick=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        await eventually(lambda: scheduler._poll_task is not None and scheduler._poll_task.done())
        clock.now = utc(2024, 5, 6, 9, 0)
        stale = []
        while len(sender.papers_to("c4")) < 1:
            stale += c.metrics.stale_loops()
            await asyncio.sleep(0.01)
        assert stale == [] and all(sender.papers_to(f"c{n}") for n in range(5))
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
