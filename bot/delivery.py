"""Pushing the day's papers to chats, through a ledger that survives crashes and outages.

Every message is a ledger row before it is sent: one per (chat, paper) in `deliveries`, one per
(chat, announcement) for the push's header in `push_headers`. A row is claimed (`pending` ->
`sending`, conditionally, so two pushers cannot both take it) right before its message goes out
and marked `sent` after. A `sent` row is never sent again; a row a crash left `sending` goes back
to pending at the next push, so at most the message in flight when the process died is sent twice.

A failed send is not retried at every scheduler tick: the row waits until its `next_attempt_at`,
1 minute after the first failure, doubling to an hour (with jitter when a random source is given);
a message the platform refused as such (PermanentSendError) waits 15 minutes from the start. A row
that has failed for 24 hours is given up (`given_up`, with the error; `paperbot status` lists it),
so an outage of up to a day delays a paper and never loses it. A transient error (network, timeout,
5xx, a 429 the rate limiter gave up on: TransientSendError) stops the chat's push for now and
holds its other rows back as long, in order; any other error concerns that one message, and the
chat's other messages go on. ChatGone switches the chat off and ChatMoved follows it to its new
id. `push --now` (force) ignores the backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from bot.app import Components
from bot.config import parse_hhmm
from bot.models import Chat, Delivery, DeliveryStatus, Paper, Platform, Summary
from bot.why import match_reasons
from bot.sender import ChatGone, ChatMoved, PartlySent, PermanentSendError, Sender, TransientSendError
from bot.store.ledger import HeaderRow

log = logging.getLogger(__name__)

T = TypeVar("T")

# arXiv's listing of day D is published at midnight New York time on D.
ARXIV_TZ = ZoneInfo("America/New_York")
CHAT_CONCURRENCY = 64  # chats pushed at once; each chat's messages go out in order
# (Telegram allows one message a second per chat: a push of a header and a post takes a chat
# over a second, so it takes some 30 chats in flight to use the 30 messages a second allowed.)
MANY_TOPICS = "Your topics"
# Backoff of a failed message: the first retry after FIRST_RETRY, doubling up to MAX_RETRY;
# a refused message starts at REFUSED_RETRY. Given up once it has failed for GIVE_UP_AFTER.
FIRST_RETRY = timedelta(minutes=1)
REFUSED_RETRY = timedelta(minutes=15)
MAX_RETRY = timedelta(hours=1)
GIVE_UP_AFTER = timedelta(hours=24)


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
    failures: int = 0  # sends that failed (tried again after a backoff, unless given up)
    given_up: int = 0  # messages given up after a day of failures
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
        if self.given_up:
            parts.append(f"{self.given_up} message(s) given up after a day of failures (see paperbot status)")
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


def retry_delay(failures: int, *, refused: bool = False, rng: random.Random | None = None) -> timedelta:
    """How long a message waits after its `failures`-th failure in a row (1, 2, ...).

    1 min, 2, 4 ... capped at 1 h (15 min from the start for a refused message); with `rng`, a
    random 0.5x to 1x of that, so that chats failing together do not retry together.
    """
    base = REFUSED_RETRY if refused else FIRST_RETRY
    delay = min(MAX_RETRY, base * 2 ** max(0, min(failures - 1, 16)))
    return delay * (0.5 + rng.random() / 2) if rng is not None else delay


async def push_once(
    c: Components,
    *,
    force: bool = False,
    senders: Mapping[Platform, Sender] | SenderFactory,
    clock: Callable[[], datetime] = now_utc,
    rng: random.Random | None = None,
    wait: bool = True,
    stopping: Callable[[], bool] = lambda: False,
    progress: Callable[[], None] | None = None,
) -> PushReport:
    """Send every due push (with `force`, everything pending, whatever the time and backoff).

    `senders` come from where the app is built (bot/senders.py for `paperbot push`, the runner
    for `paperbot run`): the core does not know the platforms. A factory is entered only once
    the lock is held and some chat is due (`paperbot push` then logs in to no platform for
    nothing). Another process pushing on the
    same database is waited for; with `wait=False` it raises PushBusy instead (`paperbot push`
    then has nothing to do). `progress` is called each time a chat's push ends (the scheduler's
    heartbeat: a push to many chats is alive while chats keep getting done).

    Once `stopping()` is true (SIGTERM), no new message is started: those in flight finish and
    are recorded, the rest stay pending for the next push, without a penalty. (`run` cancels the
    push after a grace; a message cancelled in flight is sent again at the next start.)
    """
    async with _push_lock(c, wait=wait):
        return await _push_once(
            c, force=force, senders=senders, clock=clock, rng=rng, stopping=stopping, progress=progress
        )


# Opens the senders of a push and closes them after it (`paperbot push`: its own Bot API client).
SenderFactory = Callable[[], contextlib.AbstractAsyncContextManager[Mapping[Platform, Sender]]]


class PushBusy(Exception):
    """Another process holds the database's push lock: the push is taken care of."""


@contextlib.asynccontextmanager
async def _push_lock(c: Components, *, wait: bool = True) -> AsyncIterator[None]:
    """One pusher per database: `paperbot push` from cron beside `paperbot run`, or several
    replicas on one PostgreSQL database, must not send twice (each push also resets rows a dead
    pusher left `sending`, which is only safe while it is the one pusher).

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
    senders: Mapping[Platform, Sender] | SenderFactory,
    clock: Callable[[], datetime],
    rng: random.Random | None,
    stopping: Callable[[], bool],
    progress: Callable[[], None] | None = None,
) -> PushReport:
    report = PushReport()
    now = clock()
    latest_text = await c.store.get_meta("last_announcement")
    if latest_text is None:
        return report
    latest = date.fromisoformat(latest_text)
    due = [chat for chat, last_pushed in await c.store.push_states() if force or is_due(chat, last_pushed, latest, now)]
    if not due:
        return report
    async with contextlib.AsyncExitStack() as stack:
        if callable(senders):
            senders = await stack.enter_async_context(senders())
        return await _push_due(c, due, latest, senders, report, _Policy(clock, force, rng, stopping), progress)


async def _push_due(
    c: Components, due: list[Chat], latest: date, senders: Mapping[Platform, Sender], report: PushReport, policy: _Policy,
    progress: Callable[[], None] | None = None,
) -> PushReport:
    # We hold the push lock: a row still `sending` is the message a dead process had in flight.
    if reset := await c.store.ledger_reset_in_flight():
        log.info("%d message(s) were in flight when a push stopped: they go out again", reset)
    slots = asyncio.Semaphore(CHAT_CONCURRENCY)

    async def one(chat: Chat) -> None:
        sender = senders.get(chat.platform)
        if sender is None:
            report.no_sender += 1
            return
        async with slots:
            if policy.stopping():
                return
            try:
                await _deliver(c, sender, chat, latest, report, policy)
            except Exception as exc:  # noqa: BLE001 - one chat's trouble must not cut the others' push short
                await _failed(c, chat, "push", exc, report)
            if progress is not None:
                progress()

    # Every chat's task runs to its end before the push lock is released, whatever one of them
    # raised (a failure while recording a failure, a crash): else the next push could send the
    # messages still in flight again. The first error is raised after.
    results = await asyncio.gather(*(one(chat) for chat in due), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return report


@dataclass
class _Policy:
    clock: Callable[[], datetime]
    force: bool
    rng: random.Random | None
    stopping: Callable[[], bool] = lambda: False  # no new message once true (SIGTERM)

    def ready(self, next_attempt_at: datetime | None) -> bool:
        return self.force or next_attempt_at is None or next_attempt_at <= self.clock()

    def after_failure(
        self, exc: Exception, failures: int, first_failed_at: datetime | None
    ) -> tuple[datetime, datetime, bool]:
        """(retry at, first failure, give up?) for a message that failed `failures` times in a row."""
        now = self.clock()
        first = first_failed_at or now
        delay = retry_delay(failures, refused=isinstance(exc, PermanentSendError), rng=self.rng)
        return now + delay, first, now - first >= GIVE_UP_AFTER


async def deliver_chat(
    c: Components, sender: Sender, chat: Chat, *, day: date, clock: Callable[[], datetime] = now_utc
) -> int:
    """Push one chat's pending papers for the announcement of `day`; return how many were sent."""
    report = PushReport()
    await _deliver(c, sender, chat, day, report, _Policy(clock, False, None))
    return report.papers + report.listed


async def _deliver(
    c: Components, sender: Sender, chat: Chat, day: date, report: PushReport, policy: _Policy
) -> None:
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
    ready = [r for r in order if policy.ready(r.next_attempt_at)]
    if not ready:
        return  # every message waits for its retry time
    papers = await store.papers_by_id(rows)
    queries = set().union(*(i.queries for i in items if i.arxiv_id in rows))
    title = next(iter(queries)) if len(queries) == 1 else MANY_TOPICS
    full, rest = ready[: chat.max_papers], ready[chat.max_papers :]
    target = _Target(c, chat)
    try:
        # Rows that were tried before had their header: a retry goes out without a new one.
        if policy.stopping():
            return
        if any(row.attempts == 0 for row in ready):
            header = await store.header_row(chat.id, day, create=True)
            assert header is not None
            count = len(ready)
            if not await _send_header(
                c, target, header, policy, report, lambda ch: sender.send_header(ch, title, day, count)
            ):
                # The papers wait for their header (unless it was given up): they keep their order.
                header = await store.header_row(chat.id, day, create=False)
                if header is None or header.status != DeliveryStatus.GIVEN_UP:
                    return
        topics = await store.list_topics(chat.id)
        for row in full:
            if policy.stopping():
                return

            async def post(ch: Chat, paper: Paper = papers[row.arxiv_id], queries: str = row.topic_query) -> None:
                summary, images = await _prepared(c, paper, ch.language)
                why = match_reasons(paper, sorted(queries.split("\n")), topics)
                await sender.send_paper(ch, summary, images, why=why)

            sent, stop = await _send(c, target, [row], post, report, policy)
            report.papers += sent
            if stop:
                await store.ledger_defer([r.id for r in ready if r.id not in target.sent and r is not row], stop)
                return
        if rest and not policy.stopping():
            listed = [papers[r.arxiv_id] for r in rest]
            sent, stop = await _send(c, target, rest, lambda ch: sender.send_paper_list(ch, listed), report, policy)
            report.listed += sent
            if stop:
                return
    except ChatGone as exc:
        await _gone(c, target.chat, exc, report)
        return
    finally:
        report.chats += bool(target.sent)
    if not await store.ledger_open(chat.id):
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
            await self.moved(exc)
            return await send(self.chat)

    async def moved(self, exc: ChatMoved) -> None:
        log.info("chat %s:%s moved to %s", self.chat.platform, self.chat.chat_id, exc.new_chat_id)
        await self.c.store.migrate_chat(self.chat.platform, self.chat.chat_id, exc.new_chat_id)
        self.chat = replace(self.chat, chat_id=exc.new_chat_id)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def _send_header(
    c: Components,
    target: _Target,
    header: HeaderRow,
    policy: _Policy,
    report: PushReport,
    send: Callable[[Chat], Awaitable[None]],
) -> bool:
    """Send the push's header unless it went out already; False when it did not go out now."""
    if header.status == DeliveryStatus.SENT:
        return True
    if header.status == DeliveryStatus.GIVEN_UP or not policy.ready(header.next_attempt_at):
        return False
    if not await c.store.header_claim(header.id):
        return False  # another pusher has it
    try:
        await target.call(send)
    except ChatGone:
        await c.store.header_released(header.id)
        raise
    except Exception as exc:  # noqa: BLE001 - recorded on the row and tried again after its backoff
        retry_at, first, give_up = policy.after_failure(exc, header.attempts + 1, header.first_failed_at)
        await c.store.header_failed(header.id, _describe(exc), retry_at=retry_at, first_failed=first, give_up=give_up)
        await _failed(c, target.chat, f"header of {header.announced}", exc, report, given_up=give_up)
        return False
    await c.store.header_sent(header.id, policy.clock())
    return True


async def _send(
    c: Components,
    target: _Target,
    rows: list[Delivery],
    send: Callable[[Chat], Awaitable[None]],
    report: PushReport,
    policy: _Policy,
) -> tuple[int, datetime | None]:
    """One message for these ledger rows: (rows sent, time to hold the chat's other rows back
    until when the platform seems down, else None). ChatGone propagates."""
    ids = await c.store.ledger_claim([r.id for r in rows])
    if not ids:
        return 0, None  # another pusher took them
    done = 0
    try:
        try:
            await target.call(send)
        except PartlySent as part:
            # A list in several messages stopped half way: the papers that went out are sent,
            # and only the rest meets the error (a retry sent the whole list again).
            out = [r.id for r in rows if r.id in ids and r.arxiv_id in part.sent]
            await c.store.ledger_sent(out)
            target.sent.update(out)
            ids, done = [i for i in ids if i not in out], len(out)
            raise part.error from part
    except ChatGone:
        await c.store.ledger_released(ids, "chat gone")
        raise
    except ChatMoved as exc:  # from a PartlySent: the rest goes to the new id at the next push
        await target.moved(exc)
        await c.store.ledger_released(ids, "chat moved")
        return done, None
    except Exception as exc:  # noqa: BLE001 - recorded on the rows and tried again after their backoff
        first_row = rows[0]
        retry_at, first, give_up = policy.after_failure(exc, first_row.attempts + 1, first_row.first_failed_at)
        await c.store.ledger_failed(ids, _describe(exc), retry_at=retry_at, first_failed=first, give_up=give_up)
        await _failed(c, target.chat, ", ".join(r.arxiv_id for r in rows if r.id in ids), exc, report, given_up=give_up)
        down = isinstance(exc, TransientSendError) and not give_up
        return done, retry_at if down else None
    await c.store.ledger_sent(ids)
    target.sent.update(ids)
    return done + len(ids), None


async def _gone(c: Components, chat: Chat, exc: ChatGone, report: PushReport) -> None:
    log.info("chat %s:%s is gone, switching it off (its topics are kept): %s", chat.platform, chat.chat_id, exc)
    await c.store.set_chat_active(chat.platform, chat.chat_id, False)
    report.switched_off += 1


async def _failed(
    c: Components, chat: Chat, what: str, exc: Exception, report: PushReport, *, given_up: bool = False
) -> None:
    message = f"{chat.platform}:{chat.chat_id} {what}: {type(exc).__name__}: {exc}"
    if given_up:
        message += " (given up after a day of failures)"
    log.warning("push failed: %s", message)
    report.failures += 1
    report.given_up += given_up
    report.errors.append(message)
    await c.store.record_failure("push", message)


async def _prepared(c: Components, paper: Paper, language: str) -> tuple[Summary, list[Path]]:
    """The paper's summary in `language` and its thumbnails; the poll has usually made both already."""
    summary, images = await asyncio.gather(c.summaries.summarize(paper, language), c.pdfs.thumbnails(paper))
    summary.images = [str(p) for p in images]
    return summary, images

