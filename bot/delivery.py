"""Pushing the day's papers to chats, through a ledger that survives crashes.

A ledger row per (chat, paper) is written `pending` before anything is sent, set to `sending`
right before its message goes out and `sent` after. A `sent` row is never sent again; rows that
a crash left `pending` or `sending` go out with the next push, so at most the message that was
in flight when the process died is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from bot.app import Components
from bot.config import Settings, parse_hhmm
from bot.models import Chat, Delivery, Paper, Platform, Summary
from bot.sender import ChatGone, ChatMoved, Sender
from bot.why import match_reasons

log = logging.getLogger(__name__)

T = TypeVar("T")

# arXiv's listing of day D is published at midnight New York time on D.
ARXIV_TZ = ZoneInfo("America/New_York")
MAX_ATTEMPTS = 5  # a paper that fails this often is given up (status `failed`), so it cannot block a chat
CHAT_CONCURRENCY = 8  # chats pushed at once; each chat's messages go out in order
MANY_TOPICS = "Your topics"


def now_utc() -> datetime:
    return datetime.now(UTC)


def is_due(chat: Chat, last_pushed: date | None, latest_announcement: date | None, now_utc: datetime) -> bool:
    """Whether the chat's push of the latest announcement should go out now.

    It is due from the first `push_time` (local to the chat) after arXiv published that
    announcement, and stays due until it was pushed: a push missed while the bot was down goes
    out when it comes back.
    """
    if not chat.active or latest_announcement is None:
        return False
    if last_pushed is not None and last_pushed >= latest_announcement:
        return False
    published = datetime.combine(latest_announcement, time(0), tzinfo=ARXIV_TZ).astimezone(UTC)
    return now_utc.astimezone(UTC) >= first_push_after(chat, published)


def first_push_after(chat: Chat, moment: datetime) -> datetime:
    """The first time (UTC) at or after `moment` when the chat's clock shows its push time."""
    tz = ZoneInfo(chat.timezone)
    h, m = parse_hhmm(chat.push_time)
    local_day = moment.astimezone(tz).date()
    for day in (local_day, local_day + timedelta(days=1)):
        # Aware datetimes in one zone compare by wall time; UTC compares by instant (DST days).
        at = datetime.combine(day, time(h, m), tzinfo=tz).astimezone(UTC)
        if at >= moment:
            return at
    raise AssertionError("a push time recurs every day")


@dataclass
class PushReport:
    chats: int = 0  # chats that were sent something
    papers: int = 0  # papers sent as full posts
    listed: int = 0  # papers sent in the compact list
    failures: int = 0  # sends that failed and will be tried again
    switched_off: int = 0  # chats that blocked or removed the bot
    no_sender: int = 0  # due chats of a platform this process does not serve
    errors: list[str] = field(default_factory=list)

    @property
    def eventful(self) -> bool:
        """Whether anything was sent or went wrong (skipped chats are not news every minute)."""
        return bool(self.papers or self.listed or self.failures or self.switched_off)

    def __str__(self) -> str:
        parts = [
            f"pushed {self.papers + self.listed} paper(s) to {self.chats} chat(s)"
            + (f" ({self.listed} in a list)" if self.listed else "")
            if self.papers or self.listed
            else "nothing to push"
        ]
        if self.switched_off:
            parts.append(f"{self.switched_off} chat(s) switched off (they blocked or removed the bot)")
        if self.failures:
            parts.append(f"{self.failures} failed send(s), to be tried again: {'; '.join(self.errors[:3])}")
        if self.no_sender:
            parts.append(f"{self.no_sender} chat(s) skipped: their platform is not connected")
        return "; ".join(parts)


@dataclass
class Pending:
    arxiv_id: str
    announced: date
    queries: set[str]  # the chat's topics that matched it


async def next_push(c: Components, chat: Chat, latest: date) -> list[Pending]:
    """What the chat's next push holds, in order: unsent ledger rows and new matches, one per paper."""
    assert chat.id is not None
    items: dict[str, Pending] = {}
    for d in await c.store.ledger_open(chat.id):
        items[d.arxiv_id] = Pending(d.arxiv_id, d.announced, set(filter(None, d.topic_query.split("\n"))))
    for arxiv_id, announced, query in await c.store.unledgered_matches(chat.id, latest):
        item = items.setdefault(arxiv_id, Pending(arxiv_id, announced, set()))
        item.queries.add(query)
    return sorted(items.values(), key=lambda i: (i.announced, i.arxiv_id))


async def push_once(
    c: Components,
    *,
    force: bool = False,
    senders: Mapping[Platform, Sender] | None = None,
    clock: Callable[[], datetime] = now_utc,
    wait: bool = True,
) -> PushReport:
    """Send every due push (with `force`, everything pending, whatever the time).

    Another process pushing on the same database is waited for; with `wait=False` it raises
    PushBusy instead (`paperbot push` then has nothing to do).
    """
    async with _push_lock(c, wait=wait):
        return await _push_once(c, force=force, senders=senders, clock=clock)


class PushBusy(Exception):
    """Another process holds the database's push lock: the push is taken care of."""


@contextlib.asynccontextmanager
async def _push_lock(c: Components, *, wait: bool = True) -> AsyncIterator[None]:
    """One pusher per database: `paperbot push` from cron beside `paperbot run`, or several
    replicas on one PostgreSQL database, must not send twice.

    The store's `push` lock (a file lock beside an SQLite database, an advisory lock on
    PostgreSQL); it goes with the process if that dies.
    """
    while True:
        async with c.store.try_lock("push") as got:
            if got:
                yield
                return
        if not wait:
            raise PushBusy("another process is pushing on this database; nothing to do here")
        # Each try on PostgreSQL opens a connection: look less often than at a local file.
        await asyncio.sleep(0.2 if c.store.dialect == "sqlite" else 1.0)


async def _push_once(
    c: Components,
    *,
    force: bool,
    senders: Mapping[Platform, Sender] | None,
    clock: Callable[[], datetime],
) -> PushReport:
    report = PushReport()
    latest_text = await c.store.get_meta("last_announcement")
    if latest_text is None:
        return report
    latest = date.fromisoformat(latest_text)
    now = clock()
    due = [chat for chat, last_pushed in await c.store.push_states() if force or is_due(chat, last_pushed, latest, now)]
    if not due:
        return report
    async with contextlib.AsyncExitStack() as stack:
        if senders is None:
            senders = await stack.enter_async_context(_default_senders(c.settings, c))
        slots = asyncio.Semaphore(CHAT_CONCURRENCY)

        async def one(chat: Chat) -> None:
            sender = senders.get(chat.platform)
            if sender is None:
                report.no_sender += 1
                return
            async with slots:
                try:
                    await _deliver(c, sender, chat, latest, report)
                except Exception as exc:  # noqa: BLE001 - one chat's trouble must not cut the others' push short
                    await _failed(c, chat, "push", exc, report)

        await asyncio.gather(*(one(chat) for chat in due))
    return report


async def deliver_chat(c: Components, sender: Sender, chat: Chat, *, day: date) -> int:
    """Push one chat's pending papers for the announcement of `day`; return how many were sent."""
    report = PushReport()
    await _deliver(c, sender, chat, day, report)
    return report.papers + report.listed


async def _deliver(c: Components, sender: Sender, chat: Chat, day: date, report: PushReport) -> None:
    assert chat.id is not None
    store = c.store
    items = await next_push(c, chat, day)
    if not items:
        # Nothing new: the push of `day` is done, unless a topic added since the last poll
        # still waits for the backfill that the next poll matches.
        last_poll = await store.get_meta("last_poll")
        if last_poll is None or not await store.subscribed_after(chat.id, last_poll):
            await store.set_last_pushed(chat.id, day)
        return
    await store.ledger_add(chat.id, [(i.arxiv_id, i.announced, "\n".join(sorted(i.queries))) for i in items])
    rows = {d.arxiv_id: d for d in await store.ledger_open(chat.id)}
    order = [rows[i.arxiv_id] for i in items if i.arxiv_id in rows]
    papers = await store.papers_by_id(rows)
    queries = set().union(*(i.queries for i in items if i.arxiv_id in rows))
    title = next(iter(queries)) if len(queries) == 1 else MANY_TOPICS
    full, rest = order[: chat.max_papers], order[chat.max_papers :]
    target = _Target(c, chat)
    # Rows that were tried before already had their header: a retry goes out without a new one.
    if any(row.attempts == 0 for row in order):
        try:
            await target.call(lambda ch: sender.send_header(ch, title, day, len(order)))
        except ChatGone as exc:
            await _gone(c, target.chat, exc, report)
            return
        except Exception as exc:  # noqa: BLE001 - one chat's trouble must not stop the others
            await _failed(c, target.chat, "header", exc, report)
            return
    topics = await store.list_topics(chat.id)
    try:
        for row in full:

            async def post(ch: Chat, paper: Paper = papers[row.arxiv_id], queries: str = row.topic_query) -> None:
                summary, images = await _prepared(c, paper, ch.language)
                why = match_reasons(paper, sorted(queries.split("\n")), topics)
                await sender.send_paper(ch, summary, images, why=why)

            report.papers += await _send(c, target, [row], post, report)
        if rest:
            listed = [papers[r.arxiv_id] for r in rest]
            report.listed += await _send(c, target, rest, lambda ch: sender.send_paper_list(ch, listed), report)
    except ChatGone as exc:
        await _gone(c, target.chat, exc, report)
        return
    finally:
        report.chats += bool(target.sent)
    if len(target.sent) == len(order) and not await store.ledger_open(chat.id):
        await store.set_last_pushed(chat.id, max([day, *(r.announced for r in order)]))


class _Target:
    """The chat being pushed to: follows it when it moves, and remembers which rows went out."""

    def __init__(self, c: Components, chat: Chat) -> None:
        self.c = c
        self.chat = chat
        self.sent: set[int] = set()

    async def call(self, send: Callable[[Chat], Awaitable[T]]) -> T:
        try:
            return await send(self.chat)
        except ChatMoved as exc:
            log.info("chat %s:%s moved to %s", self.chat.platform, self.chat.chat_id, exc.new_chat_id)
            await self.c.store.migrate_chat(self.chat.platform, self.chat.chat_id, exc.new_chat_id)
            self.chat = replace(self.chat, chat_id=exc.new_chat_id)
            return await send(self.chat)


async def _send(
    c: Components, target: _Target, rows: list[Delivery], send: Callable[[Chat], Awaitable[None]], report: PushReport
) -> int:
    """One message for these ledger rows; returns how many rows went out. ChatGone propagates."""
    ids = [r.id for r in rows]
    await c.store.ledger_sending(ids)
    try:
        await target.call(send)
    except ChatGone:
        await c.store.ledger_unsent(ids, "chat gone")
        raise
    except Exception as exc:  # noqa: BLE001 - recorded on the row and tried again at the next push
        await c.store.ledger_unsent(ids, f"{type(exc).__name__}: {exc}", give_up_after=MAX_ATTEMPTS)
        await _failed(c, target.chat, ", ".join(r.arxiv_id for r in rows), exc, report)
        return 0
    await c.store.ledger_sent(ids)
    target.sent.update(ids)
    return len(ids)


async def _gone(c: Components, chat: Chat, exc: ChatGone, report: PushReport) -> None:
    log.info("chat %s:%s is gone, switching it off (its topics are kept): %s", chat.platform, chat.chat_id, exc)
    await c.store.set_chat_active(chat.platform, chat.chat_id, False)
    report.switched_off += 1


async def _failed(c: Components, chat: Chat, what: str, exc: Exception, report: PushReport) -> None:
    message = f"{chat.platform}:{chat.chat_id} {what}: {type(exc).__name__}: {exc}"
    log.warning("push failed: %s", message)
    report.failures += 1
    report.errors.append(message)
    await c.store.record_failure("push", message)


async def _prepared(c: Components, paper: Paper, language: str) -> tuple[Summary, list[Path]]:
    """The paper's summary in `language` and its thumbnails; the poll has usually made both already."""
    summary, images = await asyncio.gather(c.summaries.summarize(paper, language), c.pdfs.thumbnails(paper))
    summary.images = [str(p) for p in images]
    return summary, images


async def digest_for_chat(c: Components, chat: Chat) -> tuple[date | None, list[Summary]]:
    """The latest announcement's matches for the chat's topics, summarized in its language
    (at most its `max_papers`); the ledger is not touched."""
    assert chat.id is not None
    latest_text = await c.store.get_meta("last_announcement")
    if latest_text is None:
        return None, []
    day = date.fromisoformat(latest_text)
    ids = (await c.store.matches_on(chat.id, day))[: chat.max_papers]
    papers = await c.store.papers_by_id(ids)
    prepared = await asyncio.gather(*(_prepared(c, papers[i], chat.language) for i in ids if i in papers))
    return day, [summary for summary, _ in prepared]


@contextlib.asynccontextmanager
async def _default_senders(settings: Settings, c: Components) -> AsyncIterator[dict[Platform, Sender]]:
    """The senders `paperbot push` uses on its own: the Bot API, and Discord's REST API."""
    senders: dict[Platform, Sender] = {}
    async with contextlib.AsyncExitStack() as stack:
        if settings.telegram_bot_token is not None:
            from telegram.ext import AIORateLimiter, ExtBot
            from telegram.request import HTTPXRequest

            from bot.telegram_bot import TelegramSender

            base = settings.telegram_api_base_url
            # ExtBot with the rate limiter, as in `run`: a RetryAfter is waited out, not a failure.
            bot = ExtBot(
                settings.telegram_bot_token.get_secret_value(),
                base_url=f"{base}/bot",
                base_file_url=f"{base}/file/bot",
                rate_limiter=AIORateLimiter(max_retries=3),
                # As in `run`: a media group of four figures takes longer than the 5 s default.
                request=HTTPXRequest(read_timeout=20, media_write_timeout=60),
            )
            await stack.enter_async_context(bot)
            senders[Platform.TELEGRAM] = TelegramSender(bot, c.buttons, c.store)
        if settings.discord_bot_token is not None:
            from bot.discord_bot import rest_sender

            senders[Platform.DISCORD] = await stack.enter_async_context(rest_sender(c))
        yield senders
