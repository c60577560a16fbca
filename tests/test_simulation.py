"""A deterministic simulation of two weeks of service, with faults, against the project's fakes.

The real poller, scheduler (`Scheduler.step`, ticked on a controllable clock), delivery ledger
and SQLite store run against the fake arXiv over HTTP (listings and export API). Chat platforms
are a protocol-level Sender that records what reached each chat and injects the platform's faults
(ChatGone, ChatMoved and TransientSendError, as the adapters translate their libraries' errors).

Two more seeds run the same through the real TelegramSender and python-telegram-bot against the
fake Bot API (tests/fakes/telegram.py), which refuses with Telegram's own 403, 400 and 502
answers; the adapter's translation is then part of what is checked.

A seeded random schedule of faults runs over 14 days of announcements (weekends included):
arXiv's API lagging its listing by minutes to hours, arXiv 429/503, platform outages (5xx,
timeouts) lasting minutes to hours, a chat that blocks the bot and comes back, a group that
migrates to a supergroup, and crashes at random await points (a BaseException raised from a
sender or store call; the service is torn down and rebuilt on the same database file). Then two
quiet days let retries finish, and the invariant is checked:

- every (chat, matching paper) pair is delivered exactly once, except repeats after crashes
  (at most one repeated message per crash);
- no chat receives a paper that does not match its topics;
- no header is sent for a day without an announcement, and each (chat, announcement) header once
  (again up to one repeat per crash).

50 seeds run in CI. A failing seed is named in the assertion; replay it alone with
`PAPERBOT_SIM_SEED=17 ./scripts/test.sh tests/test_simulation.py`. LLM outages are not simulated
(the summarizer is the extractive one); PDF faults belong to the PDF tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from bot.buttons import ButtonSigner
from bot.app import Components, build_components
from bot.arxiv_source import ArxivSource
from bot.config import load_settings
from bot.models import Chat, ChatKind, Paper, Platform, Summary
from bot.query import normalize_query, parse_query
from bot.scheduler import Scheduler
from bot.sender import ChatGone, ChatMoved, TransientSendError
from bot.telegram_bot import PacedRateLimiter, TelegramSender, push_bot
from tests.conftest import env_for
from tests.fakes.arxiv import FakeArxiv
from tests.fakes.telegram import TOKEN, FakeTelegram

NY = ZoneInfo("America/New_York")
START = date(2024, 5, 6)  # a Monday
DAYS = 14
QUIET_DAYS = 1  # no new faults: retries and lagging papers settle
TICK = timedelta(minutes=30)  # the scheduler's look for due pushes (every minute in `run`)
CATEGORIES = ["cs.CV", "cs.LG", "math.AP"]
WORDS = ["diffusion", "graph", "sparse", "kernel", "agent"]
SEEDS = [int(os.environ["PAPERBOT_SIM_SEED"])] if os.environ.get("PAPERBOT_SIM_SEED") else list(range(50))
TELEGRAM_SEEDS = SEEDS[:1] if os.environ.get("PAPERBOT_SIM_SEED") else [100, 101]


class Crash(BaseException):
    """The process dies here: nothing in the bot catches it."""


@dataclass
class SimChat:
    key: str  # the chat as the simulation knows it, whatever its id becomes
    chat_id: str
    queries: list[str]
    timezone: str
    push_time: str
    max_papers: int = 10
    kind: ChatKind = ChatKind.PRIVATE
    subscribe_day: int = 0  # days after START (a Saturday tests weekend backfill)


def matches(query: str, title: str, categories: list[str]) -> bool:
    """The simulation's own reading of its few queries (not the bot's matcher)."""
    if query == "cat:cs.CV":
        return "cs.CV" in categories
    if query == "ti:diffusion":
        return "diffusion" in title.lower().split()
    if query == "cat:cs.LG AND ti:graph":
        return "cs.LG" in categories and "graph" in title.lower().split()
    if query == "cat:cs.LG OR cat:math.AP":
        return "cs.LG" in categories or "math.AP" in categories
    raise AssertionError(query)


CHATS = [
    SimChat("ny", "101", ["cat:cs.CV"], "America/New_York", "09:00"),
    SimChat("sh", "102", ["ti:diffusion", "cat:cs.LG AND ti:graph"], "Asia/Shanghai", "08:30"),
    SimChat("grp", "-103", ["cat:cs.LG OR cat:math.AP"], "Europe/Berlin", "07:00", max_papers=2, kind=ChatKind.GROUP),
    SimChat("late", "104", ["cat:cs.CV"], "UTC", "10:00", subscribe_day=5),  # subscribes on a Saturday
    SimChat("blocks", "105", ["ti:diffusion"], "UTC", "12:00"),
]


@dataclass
class World:
    """The simulated time, the faults, and everything that reached the chats."""

    rng: random.Random
    now: datetime
    outages: list[tuple[datetime, datetime]] = field(default_factory=list)
    blocked: tuple[datetime, datetime] | None = None  # "blocks" blocks the bot, then writes again
    migrate_at: datetime | None = None  # "grp" becomes a supergroup
    crash_rate: float = 0.0
    crashes: int = 0
    log: list[tuple[str, str, Any]] = field(default_factory=list)  # (chat key, kind, what)
    ids: dict[str, str] = field(default_factory=dict)  # current platform id -> chat key
    http: Any = None  # one HTTP client for the listing feeds across restarts (cheaper to build)

    def maybe_crash(self, where: str) -> None:
        if self.rng.random() < self.crash_rate:
            self.crashes += 1
            raise Crash(where)

    def platform_down(self) -> bool:
        return any(a <= self.now < b for a, b in self.outages)


class SimSender:
    """The chat platform: records deliveries per chat, raises its faults."""

    platform = Platform.TELEGRAM

    def __init__(self, world: World) -> None:
        self.w = world

    async def _deliver(self, chat: Chat, kind: str, what: Any, send: Callable[[], Awaitable[None]] | None = None) -> None:
        w = self.w
        await asyncio.sleep(0)
        w.maybe_crash(f"before {kind}")
        key = w.ids.get(chat.chat_id)
        if key is None:  # an id the chat had before it migrated
            assert chat.chat_id == "-103" and w.migrate_at is not None
            await self._moved(chat)
        if key == "grp" and chat.chat_id == "-103" and w.migrate_at is not None and w.now >= w.migrate_at:
            await self._moved(chat)
        if key == "blocks" and w.blocked is not None and w.blocked[0] <= w.now < w.blocked[1]:
            await self._blocked(chat)
        if w.platform_down():
            await self._down(chat)
        if send is not None:
            await send()
        w.log.append((key, kind, what))
        w.maybe_crash(f"after {kind}")  # it reached the chat; the bot did not record that

    async def _moved(self, chat: Chat) -> None:
        raise ChatMoved("-1003")

    async def _blocked(self, chat: Chat) -> None:
        raise ChatGone("Forbidden: bot was blocked by the user")

    async def _down(self, chat: Chat) -> None:
        raise TransientSendError(self.w.rng.choice(["Telegram: NetworkError: Bad Gateway", "Telegram: TimedOut"]))

    async def send_header(self, chat: Chat, title: str, day: date, count: int) -> None:
        await self._deliver(chat, "header", day)

    async def send_paper(self, chat: Chat, summary: Summary, images: list[Path], why: object = None) -> None:
        await self._deliver(chat, "paper", summary.paper.arxiv_id)

    async def send_paper_list(self, chat: Chat, papers: list[Paper]) -> None:
        await self._deliver(chat, "list", [p.arxiv_id for p in papers])


class TelegramSimSender(SimSender):
    """The same faults, but through the real TelegramSender and python-telegram-bot against the
    fake Bot API: the fake answers 403, 400 "upgraded to a supergroup" and 502 as Telegram does,
    and the adapter's translation into ChatGone, ChatMoved and TransientSendError is what the
    delivery sees."""

    def __init__(self, world: World, real: Any, tg: FakeTelegram) -> None:
        super().__init__(world)
        self.real, self.tg = real, tg

    async def _moved(self, chat: Chat) -> None:
        self.tg.migrated(int(chat.chat_id), -1003, times=1)
        await self.real.send_header(chat, "moved?", START, 1)  # raises ChatMoved
        raise AssertionError("the fake did not refuse the message")

    async def _blocked(self, chat: Chat) -> None:
        self.tg.forbidden(int(chat.chat_id), times=1)
        await self.real.send_header(chat, "blocked?", START, 1)  # raises ChatGone
        raise AssertionError("the fake did not refuse the message")

    async def _down(self, chat: Chat) -> None:
        self.tg.fail("*", int(chat.chat_id), 502, "Bad Gateway", times=1)
        await self.real.send_header(chat, "down?", START, 1)  # raises TransientSendError
        raise AssertionError("the fake did not refuse the message")

    async def send_header(self, chat: Chat, title: str, day: date, count: int) -> None:
        await self._deliver(chat, "header", day, lambda: self.real.send_header(chat, title, day, count))

    async def send_paper(self, chat: Chat, summary: Summary, images: list[Path], why: object = None) -> None:
        await self._deliver(chat, "paper", summary.paper.arxiv_id, lambda: self.real.send_paper(chat, summary, images))

    async def send_paper_list(self, chat: Chat, papers: list[Paper]) -> None:
        ids = [p.arxiv_id for p in papers]
        await self._deliver(chat, "list", ids, lambda: self.real.send_paper_list(chat, papers))


WORLD: contextvars.ContextVar[World] = contextvars.ContextVar("world")
STAMPING = ["bot.store.base", "bot.store.chats", "bot.store.feed", "bot.store.ledger", "bot.store.papers", "bot.poller"]
# Store calls that may be the await point a crash hits (before or after the call's effect).
CRASHY = ["ledger_claim", "ledger_sent", "ledger_failed", "header_claim", "header_sent", "record_poll",
          "record_late", "upsert_paper", "set_last_pushed", "ledger_add", "migrate_chat", "set_chat_active"]


def crashy_store(c: Components, w: World) -> None:
    for name in CRASHY:
        real = getattr(c.store, name)

        async def wrapped(*args: Any, _real: Callable[..., Any] = real, _name: str = name, **kw: Any) -> Any:
            w.maybe_crash(f"before {_name}")
            result = await _real(*args, **kw)
            w.maybe_crash(f"after {_name}")
            return result

        setattr(c.store, name, wrapped)


@dataclass
class Announced:
    aid: str
    day: date
    title: str
    categories: list[str]


def plan_papers(rng: random.Random, fake: FakeArxiv) -> list[Announced]:
    papers = []
    for d in range(DAYS):  # the quiet days after bring no new announcement
        day = START + timedelta(days=d)
        if day.weekday() >= 5:
            continue
        for n in range(rng.randint(3, 7)):
            aid = f"2405.{d:02d}{n:03d}"
            cats = rng.sample(CATEGORIES, rng.choice([1, 1, 2]))
            title = f"A {rng.choice(WORDS)} method for {rng.choice(WORDS)}s"
            fake.add_paper(aid, title=title, abstract=f"We study {title.lower()}.", categories=cats,
                           published=datetime.combine(day - timedelta(days=1), time(12), tzinfo=UTC))
            papers.append(Announced(aid, day, title, cats))
    return papers


async def simulate(seed: int, tmp: Path, monkeypatch: pytest.MonkeyPatch, *, telegram: bool = False) -> None:
    rng = random.Random(seed)
    with FakeArxiv(recorded=False) as fake, FakeTelegram() as tg:
        stack = contextlib.AsyncExitStack()
        for name, value in env_for(tmp, fake).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("PAPERBOT_POLL_MINUTES", "120")
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
        monkeypatch.setenv("TELEGRAM_API_BASE_URL", tg.url)
        settings = load_settings()
        papers = plan_papers(rng, fake)
        start = datetime.combine(START, time(0), tzinfo=NY).astimezone(UTC) - timedelta(hours=6)
        end_faults = start + timedelta(days=DAYS)
        end = end_faults + timedelta(days=QUIET_DAYS)
        w = World(rng, start, crash_rate=rng.choice([0.0, 0.001, 0.002, 0.004]))
        WORLD.set(w)
        # Platform outages: 3 to 8, each from a few minutes to six hours.
        for _ in range(rng.randint(3, 8)):
            a = start + timedelta(minutes=rng.randrange(int((end_faults - start).total_seconds() // 60)))
            w.outages.append((a, a + timedelta(minutes=rng.choice([2, 10, 45, 120, 360]))))
        b0 = start + timedelta(days=rng.uniform(1, 6))
        w.blocked = (b0, b0 + timedelta(days=rng.uniform(0.5, 5)))
        w.migrate_at = start + timedelta(days=rng.uniform(0, DAYS))
        # API lag: some papers reach the export API minutes to hours after their listing.
        lag_until = {
            p.aid: datetime.combine(p.day, time(0), tzinfo=NY) + timedelta(minutes=rng.choice([5, 60, 300, 900]))
            for p in papers if rng.random() < 0.3
        }
        w.ids = {sc.chat_id: sc.key for sc in CHATS}
        subscribed: dict[str, date | None] = {}  # chat key -> its subscriptions' `since`
        blocked_done = False
        headers_expected_days = {p.day for p in papers}

        w.http = httpx.AsyncClient(timeout=30)
        if telegram:
            # Telegram's limits scaled up: the simulated days pass in seconds of real time.
            bot = await stack.enter_async_context(push_bot(settings, rate_limiter=PacedRateLimiter(scale=1000)))
            make_sender: Callable[[], SimSender] = lambda: TelegramSimSender(w, TelegramSender(bot, ButtonSigner(b"s" * 32)), tg)  # noqa: E731
        else:
            make_sender = lambda: SimSender(w)  # noqa: E731
        c = await _build(settings, w)
        scheduler = Scheduler(c, {Platform.TELEGRAM: make_sender()}, clock=lambda: w.now, rng=rng)
        try:
            while w.now < end:
                faults = w.now < end_faults
                if not faults:
                    w.crash_rate = 0.0
                ny_day = w.now.astimezone(NY).date()
                todays = [p.aid for p in papers if p.day == ny_day]
                for feed in [*CATEGORIES, "cs", "math"]:  # an archive's feed lists its categories' papers
                    fake.set_listing(
                        feed, ny_day, [a for a in todays if any(feed in (c, c.split(".")[0]) for c in fake.paper(a).categories)]
                    )
                fake.lagging = {a for a, until in lag_until.items() if w.now < until}
                if faults and rng.random() < 0.03:
                    fake.fail_next(rng.choice([429, 503]), rng.randint(1, 6))
                try:
                    for sc in CHATS:
                        if sc.key not in subscribed and w.now >= start + timedelta(days=sc.subscribe_day, hours=12):
                            subscribed[sc.key] = await _subscribe(c, sc)
                    if w.blocked and not blocked_done and w.now >= w.blocked[1]:
                        # It writes to the bot again: switched back on.
                        await c.store.ensure_chat(Chat(Platform.TELEGRAM, "105", ChatKind.PRIVATE))
                        blocked_done = True
                    if w.migrate_at and w.now >= w.migrate_at and "-1003" not in w.ids:
                        w.ids["-1003"] = "grp"
                    await scheduler.step()
                    if scheduler._poll_task is not None:
                        await scheduler._poll_task
                except Crash:
                    # The process died: tear everything down and start again on the same database.
                    await _teardown(scheduler, c)
                    c = await _build(settings, w)
                    scheduler = Scheduler(c, {Platform.TELEGRAM: make_sender()}, clock=lambda: w.now, rng=rng)
                w.now += TICK
        finally:
            await _teardown(scheduler, c)
            await stack.aclose()
            await w.http.aclose()
        await check(seed, w, papers, subscribed, headers_expected_days, tmp)
        if telegram:
            # What the chats got is what the fake Bot API took: nothing the log missed.
            taken = [call for call in tg.calls if call.method == "sendMessage" and call.error is None]
            refused = {call.error for call in tg.calls if call.error is not None}
            assert len(taken) == len(w.log) > 100, f"simulation seed {seed}: {len(taken)} messages taken, {len(w.log)} logged"
            assert any("Bad Gateway" == e for e in refused) or not w.outages, refused
            assert refused <= {"Bad Gateway", "Forbidden: bot was blocked by the user",
                               "Bad Request: group chat was upgraded to a supergroup chat"}, refused


async def _build(settings: Any, w: World) -> Components:
    c = await build_components(settings)
    await c.arxiv.aclose()
    c.arxiv = ArxivSource(settings.arxiv_api_url, settings.arxiv_rss_url, c.limiter, backoff_base=0.0, http=w.http)
    crashy_store(c, w)
    return c


async def _teardown(scheduler: Scheduler, c: Components) -> None:
    task = scheduler._poll_task
    if task is not None and not task.done():
        task.cancel()
    if task is not None:
        try:
            await task
        except BaseException:  # noqa: BLE001 - the dead process's poll
            pass
    await c.aclose()


async def _subscribe(c: Components, sc: SimChat) -> date | None:
    chat = await c.store.ensure_chat(
        Chat(Platform.TELEGRAM, sc.chat_id, sc.kind, timezone=sc.timezone, push_time=sc.push_time,
             max_papers=sc.max_papers)
    )
    assert chat.id is not None
    since = await c.store.get_meta("last_announcement")
    for q in sc.queries:
        await c.store.add_topic(chat.id, normalize_query(parse_query(q)), since=since)
    return date.fromisoformat(since) if since else None


async def check(
    seed: int, w: World, papers: list[Announced], subscribed: dict[str, date | None], days: set[date], tmp: Path
) -> None:
    from bot.store import Store

    async with await Store.open(tmp / "paperbot.db") as store:
        row = await store.fetchone("SELECT backlog_from FROM chats WHERE chat_id='105'")
        backlog_from = date.fromisoformat(row[0]) if row and row[0] else None
        given_up = await store.given_up(50)
    problems: list[str] = []
    total_repeats = 0
    for sc in CHATS:
        since = subscribed.get(sc.key)
        got: list[str] = []
        headers: list[date] = []
        for key, kind, what in w.log:
            if key != sc.key:
                continue
            if kind == "header":
                headers.append(what)
            else:
                got += what if kind == "list" else [what]
        counts = Counter(got)
        total_repeats += sum(n - 1 for n in counts.values()) + sum(n - 1 for n in Counter(headers).values())
        matching = {p.aid for p in papers if any(matches(q, p.title, p.categories) for q in sc.queries)
                    and (since is None or p.day >= since)}
        expected = set(matching)
        if sc.key == "blocks" and backlog_from is not None:
            # Back after being switched off: the announcement it came back to, and later ones.
            got_before = {a for a in counts}
            expected = {a for a in matching if a in got_before or next(p for p in papers if p.aid == a).day >= backlog_from}
        if not expected:
            # The invariant would hold of a bot that delivers nothing: every chat must expect papers.
            problems.append(f"{sc.key}: the simulation gave it nothing to expect")
        missing = expected - set(counts)
        wrong = set(counts) - matching
        if missing:
            problems.append(f"{sc.key}: never got {sorted(missing)}")
        if wrong:
            problems.append(f"{sc.key}: got papers that do not match: {sorted(wrong)}")
        if bad := [d for d in headers if d not in days]:
            problems.append(f"{sc.key}: a header for a day without an announcement: {bad}")
    if total_repeats > w.crashes:
        problems.append(f"{total_repeats} repeated message(s) after {w.crashes} crash(es)")
    stray = [g for g in given_up[1] if g.error != "the chat was switched off"]
    if stray:
        problems.append(f"given up: {stray}")
    assert not problems, f"simulation seed {seed} (replay: PAPERBOT_SIM_SEED={seed}): " + "; ".join(problems)


@pytest.mark.parametrize("seed", TELEGRAM_SEEDS)
async def test_the_same_through_the_real_telegram_sender(seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in STAMPING:
        monkeypatch.setattr(f"{module}.now_iso", lambda: WORLD.get().now.isoformat(timespec="seconds"))
    await asyncio.create_task(simulate(seed, tmp_path, monkeypatch, telegram=True))


BATCH = 5  # seeds run at once: most of a seed's time is spent waiting on the database thread and HTTP


@pytest.mark.parametrize("batch", range(0, len(SEEDS), BATCH), ids=lambda b: f"seeds{SEEDS[b]}-{SEEDS[min(b + BATCH, len(SEEDS)) - 1]}")
async def test_two_weeks_of_faults_deliver_every_paper_once(
    batch: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store and the poller stamp rows with the time of day: make that each world's simulated time.
    for module in STAMPING:
        monkeypatch.setattr(f"{module}.now_iso", lambda: WORLD.get().now.isoformat(timespec="seconds"))
    seeds = SEEDS[batch : batch + BATCH]

    async def one(seed: int) -> None:
        (tmp_path / str(seed)).mkdir()
        await asyncio.create_task(simulate(seed, tmp_path / str(seed), monkeypatch))  # its own context

    results = await asyncio.gather(*(one(seed) for seed in seeds), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        if not isinstance(failure, AssertionError):
            raise failure
    assert not failures, "\n".join(str(f) for f in failures)
