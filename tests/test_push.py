"""The push: header, posts and list per chat, and the delivery ledger across failures and crashes.

Papers come from the fake arXiv through a real poll; a recording Sender stands in for the chat
platforms (their adapters are tested on their own).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import Components
from bot.delivery import deliver_chat, push_once
from bot.models import Chat, ChatKind, Paper, Platform, Summary
from bot.poller import Poller
from bot.query import normalize_query, parse_query
from bot.sender import ChatGone, ChatMoved, PermanentSendError, TransientSendError
from tests.conftest import env_for, subprocess_env
from tests.fakes.arxiv import SEED_ID, FakeArxiv

MONDAY = date(2024, 5, 6)
TUESDAY = date(2024, 5, 7)


class Crash(BaseException):
    """The process dies: nothing in the bot catches this."""


class RecordingSender:
    """A Sender that records what reached each chat; `fail(kind, exc, at=n, chat=id)` makes its
    n-th call of a kind ("header", "paper", "list") to that chat raise."""

    platform = Platform.TELEGRAM

    def __init__(self) -> None:
        self.log: list[tuple[str, str, Any]] = []
        self.summaries: list[Summary] = []
        self.images: list[list[Path]] = []
        self._calls: dict[tuple[str, str], int] = {}
        self._failures: dict[tuple[str, str, int], BaseException] = {}

    def fail(self, kind: str, exc: BaseException, at: int = 1, chat: str = "100") -> None:
        self._failures[(kind, chat, at)] = exc

    def _call(self, kind: str, chat: Chat) -> None:
        n = self._calls[(kind, chat.chat_id)] = self._calls.get((kind, chat.chat_id), 0) + 1
        exc = self._failures.pop((kind, chat.chat_id, n), None)
        if exc is not None:
            raise exc

    async def send_header(self, chat: Chat, title: str, day: date, count: int) -> None:
        self._call("header", chat)
        self.log.append(("header", chat.chat_id, f"{title} — {day}: {count}"))

    async def send_paper(self, chat: Chat, summary: Summary, images: list[Path], why: object = None) -> None:
        self._call("paper", chat)
        self.log.append(("paper", chat.chat_id, summary.paper.arxiv_id))
        self.summaries.append(summary)
        self.images.append(images)

    async def send_paper_list(self, chat: Chat, papers: list[Paper]) -> None:
        self._call("list", chat)
        self.log.append(("list", chat.chat_id, [p.arxiv_id for p in papers]))

    def papers_to(self, chat_id: str) -> list[str]:
        out: list[str] = []
        for kind, cid, what in self.log:
            if cid == chat_id and kind != "header":
                out += what if kind == "list" else [what]
        return out


def add_papers(
    fake: FakeArxiv, prefix: str, titles: Sequence[str], categories: Sequence[str] = ("cs.CV",)
) -> list[str]:
    """Register papers 2405.{prefix}{n:03d} (prefix: two digits) with these titles; return their ids."""
    ids = []
    for n, title in enumerate(titles):
        aid = f"2405.{prefix}{n:03d}"
        fake.add_paper(
            aid, title=title, abstract=f"We study {title.lower()}.", authors=["Ada Lovelace"],
            published=datetime(2024, 5, 3, 12, n, tzinfo=UTC), categories=list(categories),
        )
        ids.append(aid)
    return ids


async def subscribe(
    c: Components, chat_id: str, *queries: str, kind: ChatKind = ChatKind.PRIVATE, **settings: Any
) -> Chat:
    """A chat following these queries, as service.subscribe stores them (since = last announcement)."""
    chat = await c.store.ensure_chat(Chat(Platform.TELEGRAM, chat_id, kind, **settings))
    assert chat.id is not None
    since = await c.store.get_meta("last_announcement")
    for q in queries:
        await c.store.add_topic(chat.id, normalize_query(parse_query(q)), since=since)
    return chat


async def announce(c: Components, fake: FakeArxiv, day: date, items: Sequence[Any], feed: str = "cs.CV") -> None:
    fake.set_listing(feed, day, items)
    report = await Poller(c).run_once()
    assert not report.failures, report


async def statuses(c: Components, chat: Chat) -> list[tuple[str, str]]:
    assert chat.id is not None
    return [(d.arxiv_id, d.status) for d in await c.store.ledger_rows(chat.id)]


async def last_pushed(c: Components, chat: Chat) -> date | None:
    return dict((ch.id, lp) for ch, lp in await c.store.push_states())[chat.id]


# --- what a chat gets -----------------------------------------------------------------------


async def test_header_posts_up_to_max_then_a_list(components: Components, fake_arxiv: FakeArxiv) -> None:
    c = components
    chat = await subscribe(c, "100", "cat:cs.CV", max_papers=2, language="zh")
    ids = add_papers(fake_arxiv, "20", ["Diffusion for steel", "Transformers for rust"])
    await announce(c, fake_arxiv, MONDAY, [SEED_ID, *ids])
    sender = RecordingSender()

    report = await push_once(c, force=True, senders={Platform.TELEGRAM: sender})

    assert sender.log == [
        ("header", "100", "cat:cs.CV — 2024-05-06: 3"),
        ("paper", "100", SEED_ID),
        ("paper", "100", ids[0]),
        ("list", "100", [ids[1]]),
    ]
    assert str(report) == "pushed 3 paper(s) to 1 chat(s) (1 in a list)"
    # The seed paper's PDF has a figure: its post carries the thumbnail the poll prepared.
    assert sender.images[0] and all(p.is_file() for p in sender.images[0])
    assert sender.summaries[0].content.key_takeaways and sender.summaries[0].images == [str(p) for p in sender.images[0]]
    assert await statuses(c, chat) == [(SEED_ID, "sent"), (ids[0], "sent"), (ids[1], "sent")]
    assert await last_pushed(c, chat) == MONDAY
    assert await c.store.count_pending_deliveries() == 0


async def test_title_names_the_topic_only_when_one_topic_matched(components: Components, fake_arxiv: FakeArxiv) -> None:
    c = components
    await subscribe(c, "1", "ti:diffusion", "ti:transformers")
    await subscribe(c, "2", "ti:diffusion", "ti:graphs")
    ids = add_papers(fake_arxiv, "30", ["Diffusion models", "Transformers everywhere", "Diffusion transformers"])
    await announce(c, fake_arxiv, MONDAY, ids, feed="cs")  # topics without a category read the archives
    sender = RecordingSender()

    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})

    headers = {cid: text for kind, cid, text in sender.log if kind == "header"}
    assert headers == {"1": "Your topics — 2024-05-06: 3", "2": "ti:diffusion — 2024-05-06: 2"}
    # A paper two topics matched comes once.
    assert sender.papers_to("1") == ids and sender.papers_to("2") == [ids[0], ids[2]]


async def test_push_now_twice_sends_nothing_the_second_time(components: Components, fake_arxiv: FakeArxiv) -> None:
    c = components
    await subscribe(c, "100", "cat:cs.CV")
    await announce(c, fake_arxiv, MONDAY, add_papers(fake_arxiv, "20", ["A", "B"]))
    sender = RecordingSender()

    first = await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    second = await push_once(c, force=True, senders={Platform.TELEGRAM: sender})

    assert (first.papers, second.papers) == (2, 0)
    assert str(second) == "nothing to push"
    assert len(sender.log) == 3


async def test_two_pushers_on_one_database_send_each_paper_once(
    components: Components, fake_arxiv: FakeArxiv
) -> None:
    """`paperbot push` from cron while `paperbot run` pushes: a second pusher waits its turn."""
    from bot.app import build_components

    c = components
    await subscribe(c, "100", "cat:cs.CV")
    await announce(c, fake_arxiv, MONDAY, add_papers(fake_arxiv, "20", ["A", "B", "C"]))

    class SlowSender(RecordingSender):
        async def send_paper(self, chat: Chat, summary: Summary, images: list[Path], why: object = None) -> None:
            await asyncio.sleep(0.1)  # long enough for the other pusher to read the same ledger
            await super().send_paper(chat, summary, images)

    sender = SlowSender()
    other = await build_components(c.settings)  # the other process: its own connection
    try:
        await asyncio.gather(
            push_once(c, force=True, senders={Platform.TELEGRAM: sender}),
            push_once(other, force=True, senders={Platform.TELEGRAM: sender}),
        )
    finally:
        await other.aclose()
    assert sorted(sender.papers_to("100")) == sorted(set(sender.papers_to("100")))
    assert len(sender.papers_to("100")) == 3
    assert [k for k, *_ in sender.log].count("header") == 1


async def test_a_day_with_nothing_new_sends_nothing(components: Components, fake_arxiv: FakeArxiv) -> None:
    c = components
    chat = await subscribe(c, "100", "ti:graphs")
    await announce(c, fake_arxiv, MONDAY, add_papers(fake_arxiv, "20", ["Diffusion", "Transformers"]), feed="cs")
    sender = RecordingSender()

    assert str(await push_once(c, force=True, senders={Platform.TELEGRAM: sender})) == "nothing to push"
    assert sender.log == []
    # The announcement counts as pushed: the chat is not due again for it.
    assert await last_pushed(c, chat) == MONDAY


async def test_only_due_chats_are_pushed(components: Components, fake_arxiv: FakeArxiv) -> None:
    c = components
    await subscribe(c, "ny", "cat:cs.CV", timezone="America/New_York", push_time="09:00")
    await subscribe(c, "sh", "cat:cs.CV", timezone="Asia/Shanghai", push_time="09:00")
    await announce(c, fake_arxiv, MONDAY, add_papers(fake_arxiv, "20", ["A"]))
    sender = RecordingSender()
    senders = {Platform.TELEGRAM: sender}

    await push_once(c, senders=senders, clock=lambda: datetime(2024, 5, 6, 12, 59, tzinfo=UTC))  # 08:59 in NY
    assert sender.log == []
    await push_once(c, senders=senders, clock=lambda: datetime(2024, 5, 6, 13, 0, tzinfo=UTC))
    assert [cid for kind, cid, _ in sender.log if kind == "header"] == ["ny"]
    # Shanghai's 09:00 after the announcement is Tuesday's, 01:00 UTC.
    await push_once(c, senders=senders, clock=lambda: datetime(2024, 5, 7, 1, 0, tzinfo=UTC))
    assert [cid for kind, cid, _ in sender.log if kind == "header"] == ["ny", "sh"]
    await push_once(c, senders=senders, clock=lambda: datetime(2024, 5, 7, 15, 0, tzinfo=UTC))
    assert len(sender.log) == 4


async def test_deliver_chat_returns_what_it_sent(components: Components, fake_arxiv: FakeArxiv) -> None:
    c = components
    chat = await subscribe(c, "100", "cat:cs.CV")
    await announce(c, fake_arxiv, MONDAY, add_papers(fake_arxiv, "20", ["A", "B"]))
    sender = RecordingSender()
    assert await deliver_chat(c, sender, chat, day=MONDAY) == 2
    assert await deliver_chat(c, sender, chat, day=MONDAY) == 0


# --- the ledger across failures ---------------------------------------------------------------


async def test_a_crash_mid_push_loses_nothing_and_resends_nothing_sent(
    components: Components, fake_arxiv: FakeArxiv
) -> None:
    c = components
    chat = await subscribe(c, "100", "cat:cs.CV")
    ids = add_papers(fake_arxiv, "20", ["A", "B", "C"])
    await announce(c, fake_arxiv, MONDAY, ids)
    dying = RecordingSender()
    dying.fail("paper", Crash(), at=2)

    try:
        await push_once(c, force=True, senders={Platform.TELEGRAM: dying})
    except Crash:
        pass
    else:
        raise AssertionError("the crash did not get through")

    assert dying.papers_to("100") == [ids[0]]
    # The ledger shows where it stopped: the paper in flight, and one not yet tried.
    assert await statuses(c, chat) == [(ids[0], "sent"), (ids[1], "sending"), (ids[2], "pending")]
    assert await c.store.count_pending_deliveries() == 2
    assert await last_pushed(c, chat) is None

    restarted = RecordingSender()
    await push_once(c, force=True, senders={Platform.TELEGRAM: restarted})
    # SPEC: at most the message in flight is sent twice. The header went out before the crash
    # and is in the ledger: it is not repeated.
    assert restarted.log == [("paper", "100", ids[1]), ("paper", "100", ids[2])]
    assert [s for _, s in await statuses(c, chat)] == ["sent"] * 3
    assert await last_pushed(c, chat) == MONDAY


async def test_a_failed_send_is_recorded_and_tried_again_after_its_backoff(
    components: Components, fake_arxiv: FakeArxiv
) -> None:
    c = components
    chat = await subscribe(c, "100", "cat:cs.CV", timezone="UTC", push_time="09:00")
    ids = add_papers(fake_arxiv, "20", ["A", "B", "C"])
    await announce(c, fake_arxiv, MONDAY, ids)
    sender = RecordingSender()
    sender.fail("paper", RuntimeError("PHOTO_INVALID"), at=2)
    ten = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
    senders = {Platform.TELEGRAM: sender}

    report = await push_once(c, senders=senders, clock=lambda: ten)

    assert (report.papers, report.failures) == (2, 1)
    assert "failed send(s)" in str(report) and "PHOTO_INVALID" in str(report)
    # An error about one message does not hold the chat's others back.
    assert sender.papers_to("100") == [ids[0], ids[2]]
    assert await statuses(c, chat) == [(ids[0], "sent"), (ids[1], "pending"), (ids[2], "sent")]
    kind, detail = (await c.store.recent_failures())[0][1:]
    assert kind == "push" and ids[1] in detail and "PHOTO_INVALID" in detail
    assert await last_pushed(c, chat) is None  # still due
    (row,) = [d for d in await c.store.ledger_rows(chat.id) if d.arxiv_id == ids[1]]  # type: ignore[arg-type]
    assert row.next_attempt_at == ten + timedelta(minutes=1) and row.first_failed_at == ten

    # Not at the next scheduler tick of the same minute: the row waits for its retry time.
    await push_once(c, senders=senders, clock=lambda: ten + timedelta(seconds=59))
    assert len(sender.log) == 3
    await push_once(c, senders=senders, clock=lambda: ten + timedelta(minutes=1))
    # The retry sends the paper alone: its header went out with the first try.
    assert sender.log[-2:] == [("paper", "100", ids[2]), ("paper", "100", ids[1])]
    assert [e for e in sender.log if e[0] == "header"] == [("header", "100", "cat:cs.CV — 2024-05-06: 3")]
    assert await last_pushed(c, chat) == MONDAY


async def test_an_outage_backs_off_exponentially_and_gives_up_only_after_a_day(
    components: Components, fake_arxiv: FakeArxiv
) -> None:
    """Item 2: failures are retried after 1, 2, 4 ... minutes up to an hour, on the clock (not at
    every scheduler tick), the chat's later papers wait in order, and only a day gives a paper up."""
    c = components
    chat = await subscribe(c, "100", "cat:cs.CV", timezone="UTC", push_time="09:00")
    ids = add_papers(fake_arxiv, "20", ["A", "B", "C"])
    await announce(c, fake_arxiv, MONDAY, ids)
    start = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)

    class BrokenForB(RecordingSender):
        now = start
        tries: list[datetime] = []

        async def send_paper(self, chat: Chat, summary: Summary, images: list[Path], why: object = None) -> None:
            if summary.paper.arxiv_id == ids[1]:
                self.tries.append(self.now)
                raise TransientSendError("Telegram: NetworkError: Bad Gateway")
            await super().send_paper(chat, summary, images)

    sender = BrokenForB()
    # As the scheduler does: a look every minute for two hours, then every ten (to keep the test quick).
    ticks = [start + timedelta(minutes=m) for m in [*range(120), *range(120, 26 * 60, 10)]]
    for now in ticks:
        sender.now = now
        await push_once(c, senders={Platform.TELEGRAM: sender}, clock=lambda: sender.now)

    gaps = [(b - a) / timedelta(minutes=1) for a, b in zip(sender.tries, sender.tries[1:])]
    assert gaps[:6] == [1, 2, 4, 8, 16, 32] and all(60 <= g < 70 for g in gaps[6:])  # ticks of 10 min
    assert sender.tries[-1] - sender.tries[0] >= timedelta(hours=24)
    # B was given up with its reason; C waited behind it, in order, and then went out.
    assert sender.papers_to("100") == [ids[0], ids[2]]
    assert await statuses(c, chat) == [(ids[0], "sent"), (ids[1], "given_up"), (ids[2], "sent")]
    count, examples = await c.store.given_up()
    assert count == 1 and examples[0].what == ids[1] and "Bad Gateway" in examples[0].error
    assert examples[0].since == sender.tries[0]
    assert await last_pushed(c, chat) == MONDAY


async def test_an_outage_shorter_than_a_day_loses_nothing(components: Components, fake_arxiv: FakeArxiv) -> None:
    c = components
    chat = await subscribe(c, "100", "cat:cs.CV", timezone="UTC", push_time="09:00")
    ids = add_papers(fake_arxiv, "20", ["A", "B", "C"])
    await announce(c, fake_arxiv, MONDAY, ids)
    start = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)

    class Outage(RecordingSender):
        now = start

        def _call(self, kind: str, chat: Chat) -> None:
            if self.now < start + timedelta(hours=5):  # five hours of 502s after the header
                if kind != "header":
                    raise TransientSendError("Telegram: NetworkError: Bad Gateway")
            super()._call(kind, chat)

    sender = Outage()
    for minute in range(8 * 60):
        sender.now = start + timedelta(minutes=minute)
        await push_once(c, senders={Platform.TELEGRAM: sender}, clock=lambda: sender.now)
    assert sender.papers_to("100") == ids
    assert [k for k, *_ in sender.log].count("header") == 1
    assert [s for _, s in await statuses(c, chat)] == ["sent"] * 3
    # Backoff: about a dozen tries in five hours, not 300.
    assert sum(1 for d in await c.store.recent_failures(500) if "Bad Gateway" in d[2]) < 15


async def test_push_now_ignores_the_backoff(components: Components, fake_arxiv: FakeArxiv) -> None:
    c = components
    chat = await subscribe(c, "100", "cat:cs.CV")
    ids = add_papers(fake_arxiv, "20", ["A"])
    await announce(c, fake_arxiv, MONDAY, ids)
    sender = RecordingSender()
    sender.fail("paper", TransientSendError("timed out"), at=1)
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    assert sender.papers_to("100") == []
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    assert sender.papers_to("100") == ids and await statuses(c, chat) == [(ids[0], "sent")]


async def test_a_header_that_fails_waits_for_its_backoff_and_holds_its_papers(
    components: Components, fake_arxiv: FakeArxiv
) -> None:
    """Item 3: an ordinary error on a header (no rights) is not retried every minute forever."""
    c = components
    chat = await subscribe(c, "100", "cat:cs.CV", timezone="UTC", push_time="09:00")
    ids = add_papers(fake_arxiv, "20", ["A", "B"])
    await announce(c, fake_arxiv, MONDAY, ids)
    start = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)

    class NoRights(RecordingSender):
        def _call(self, kind: str, chat: Chat) -> None:
            super()._call(kind, chat)
            raise PermanentSendError("Telegram refused the message: not enough rights to send text messages")

    sender = NoRights()
    for minute in range(0, 26 * 60, 1):
        now = start + timedelta(minutes=minute)
        await push_once(c, senders={Platform.TELEGRAM: sender}, clock=lambda now=now: now)
    headers = sender._calls[("header", "100")]
    # 15 min, then doubling to an hour: about 26 tries in 26 hours, not 1,560.
    assert 20 <= headers <= 30
    assert sender.log == []  # nothing went out
    count, examples = await c.store.given_up()
    # The header was given up after a day; then its papers are tried without it (and wait their own day).
    assert count == 1 and examples[0].what == "header of 2024-05-06" and "not enough rights" in examples[0].error
    assert sender._calls[("paper", "100")] >= 1
    assert await statuses(c, chat) == [(ids[0], "pending"), (ids[1], "pending")]


async def test_the_failure_log_and_quota_events_are_pruned(components: Components, fake_arxiv: FakeArxiv) -> None:
    """Item 3: neither log grows for ever; a poll prunes both."""
    c = components
    now = datetime.now(UTC)
    for days in (1, 6, 8, 30):
        at = (now - timedelta(days=days)).isoformat(timespec="seconds")
        await c.store.execute("INSERT INTO failures(at, kind, detail) VALUES (?,?,?)", (at, "push", f"{days} days ago"))
        await c.store.execute("INSERT INTO quota_events(user_key, at) VALUES (?,?)", ("u", at))
    await c.store.quota_add("u")

    await Poller(c).run_once()

    details = {d for _, _, d in await c.store.recent_failures(10)}
    assert details == {"1 days ago", "6 days ago"}
    assert await c.store.quota_used("u") == 1
    row = await c.store.fetchone("SELECT COUNT(*) FROM quota_events")
    assert row is not None and row[0] == 2  # the one of 36 hours ago is gone


async def test_a_chat_that_blocked_the_bot_is_switched_off_and_keeps_its_topics(
    components: Components, fake_arxiv: FakeArxiv
) -> None:
    c = components
    chat = await subscribe(c, "100", "cat:cs.CV", "cat:cs.CV AND ti:diffusion")
    other = await subscribe(c, "200", "cat:cs.CV")
    ids = add_papers(fake_arxiv, "20", ["Diffusion A", "B"])
    await announce(c, fake_arxiv, MONDAY, ids)
    sender = RecordingSender()
    sender.fail("paper", ChatGone("Forbidden: bot was blocked by the user"), at=2)

    report = await push_once(c, force=True, senders={Platform.TELEGRAM: sender})

    assert report.switched_off == 1 and "1 chat(s) switched off" in str(report)
    stored = await c.store.get_chat(Platform.TELEGRAM, "100")
    assert stored is not None and not stored.active
    assert [t.query for t in await c.store.list_topics(chat.id)] == ["cat:cs.CV", "cat:cs.CV AND ti:diffusion"]  # type: ignore[arg-type]
    assert sender.papers_to("100") == [ids[0]] and sender.papers_to("200") == ids
    # No more sends to it.
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    assert sender.papers_to("100") == [ids[0]]
    assert other.active


async def test_a_group_that_became_a_supergroup_gets_its_push_under_the_new_id(
    components: Components, fake_arxiv: FakeArxiv
) -> None:
    c = components
    chat = await subscribe(c, "-100", "cat:cs.CV", kind=ChatKind.GROUP)
    await announce(c, fake_arxiv, MONDAY, add_papers(fake_arxiv, "20", ["A"]))
    sender = RecordingSender()
    sender.fail("header", ChatMoved("-1009"), chat="-100")

    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})

    assert [(kind, cid) for kind, cid, _ in sender.log] == [("header", "-1009"), ("paper", "-1009")]
    moved = await c.store.get_chat(Platform.TELEGRAM, "-1009")
    assert moved is not None and moved.id == chat.id and moved.kind == ChatKind.SUPERGROUP
    assert await c.store.get_chat(Platform.TELEGRAM, "-100") is None
    assert [t.query for t in await c.store.list_topics(moved.id)] == ["cat:cs.CV"]  # type: ignore[arg-type]


# --- backfill and /digest ---------------------------------------------------------------------


async def test_a_new_subscription_gets_the_last_announcement_not_older_ones(
    components: Components, fake_arxiv: FakeArxiv
) -> None:
    c = components
    old_timer = await subscribe(c, "1", "cat:cs.CV")
    monday = add_papers(fake_arxiv, "20", ["Diffusion on Monday", "Graphs on Monday"])
    tuesday = add_papers(fake_arxiv, "30", ["Diffusion on Tuesday", "Graphs on Tuesday"])
    sender = RecordingSender()
    await announce(c, fake_arxiv, MONDAY, monday)
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    await announce(c, fake_arxiv, TUESDAY, tuesday)
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    assert sender.papers_to("1") == monday + tuesday

    # Tuesday's cs.CV listing was processed before this topic existed; the next poll matches it.
    newcomer = await subscribe(c, "2", "cat:cs.CV AND ti:diffusion")
    api_before = fake_arxiv.count("api")
    await Poller(c).run_once()
    assert fake_arxiv.count("api") == api_before  # the paper is stored already
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})

    assert sender.papers_to("2") == [tuesday[0]]
    assert sender.papers_to("1") == monday + tuesday  # nothing twice
    assert await last_pushed(c, newcomer) == TUESDAY and await last_pushed(c, old_timer) == TUESDAY


async def test_digest_is_the_latest_announcement_and_leaves_the_ledger(
    components: Components, fake_arxiv: FakeArxiv
) -> None:
    from bot.service import Service

    c = components
    chat = await subscribe(c, "100", "ti:diffusion", language="de", max_papers=1)
    assert (await Service(c).digest(chat, None)).day is None
    await announce(c, fake_arxiv, MONDAY, add_papers(fake_arxiv, "20", ["Diffusion A", "Other"]), feed="cs")
    ids = add_papers(fake_arxiv, "30", ["Diffusion B", "Diffusion C"])
    await announce(c, fake_arxiv, TUESDAY, ids, feed="cs")

    result = await Service(c).digest(chat, None)
    day, summaries = result.day, result.summaries

    assert day == TUESDAY
    assert [s.paper.arxiv_id for s in summaries] == [ids[0]]  # max_papers
    assert await statuses(c, chat) == [] and await c.store.count_pending_deliveries() == 0


async def test_paperbot_push_now_sends_through_telegram_once(tmp_path: Path, fake_arxiv: FakeArxiv) -> None:
    import asyncio
    import sys

    from bot.store import Store
    from tests.fakes.telegram import TOKEN, FakeTelegram, parse_html

    add_papers(fake_arxiv, "20", ["Diffusion A"])
    fake_arxiv.set_listing("cs.CV", MONDAY, ["2405.20000"])
    with FakeTelegram() as tg:
        tg.private_chat(tg.user(4242))
        env = subprocess_env(
            {**env_for(tmp_path, fake_arxiv), "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": tg.url}
        )
        async with await Store.open(env["PAPERBOT_DB"]) as store:
            chat = await store.ensure_chat(Chat(Platform.TELEGRAM, "4242", ChatKind.PRIVATE))
            await store.add_topic(chat.id, "cat:cs.CV")  # type: ignore[arg-type]

        async def paperbot(*args: str) -> str:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", *args, env=env, cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            return out.decode().strip()

        assert (await paperbot("poll")).startswith("announcement of 2024-05-06: 1 listed, 1 matched")
        assert await paperbot("push", "--now") == "pushed 1 paper(s) to 1 chat(s)"
        assert await paperbot("push", "--now") == "nothing to push"

        texts = [parse_html(call.params["text"]) for call in tg.calls_to("sendMessage", 4242)]
        assert texts[0].startswith("cat:cs.CV — 2024-05-06: 1 new paper")
        assert texts[1].startswith("Diffusion A")
        assert len(tg.calls_to("sendMessage", 4242)) == 2


async def test_trouble_with_one_chat_does_not_cut_the_others_short(
    components: Components, fake_arxiv: FakeArxiv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chat whose ledger cannot be written is recorded as a failure; the others' pushes finish
    before the push lock is released, so nothing goes out twice."""
    c = components
    await subscribe(c, "100", "cat:cs.CV")
    broken = await subscribe(c, "200", "cat:cs.CV")
    await announce(c, fake_arxiv, MONDAY, add_papers(fake_arxiv, "20", ["A", "B", "C"]))
    real_add = c.store.ledger_add

    async def ledger_add(chat_pk: int, rows: Any) -> None:
        if chat_pk == broken.id:
            raise sqlite3.OperationalError("disk I/O error")
        await real_add(chat_pk, rows)

    monkeypatch.setattr(c.store, "ledger_add", ledger_add)
    sender = RecordingSender()
    report = await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    assert len(sender.papers_to("100")) == 3 and sender.papers_to("200") == []
    assert report.failures == 1 and "disk I/O error" in (await c.store.recent_failures())[0][2]
    monkeypatch.undo()
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    assert len(sender.papers_to("100")) == 3 and len(sender.papers_to("200")) == 3


async def test_a_crash_while_the_header_is_in_flight_repeats_only_the_header(
    components: Components, fake_arxiv: FakeArxiv
) -> None:
    """Item 4: the header is in the ledger too; a crash repeats at most the message in flight."""
    c = components
    await subscribe(c, "100", "cat:cs.CV")
    ids = add_papers(fake_arxiv, "20", ["A", "B"])
    await announce(c, fake_arxiv, MONDAY, ids)

    class DiesAfterHeader(RecordingSender):
        async def send_header(self, chat: Chat, title: str, day: date, count: int) -> None:
            await super().send_header(chat, title, day, count)  # it reached the chat ...
            raise Crash()  # ... and the process died before recording that

    dying = DiesAfterHeader()
    with pytest.raises(Crash):
        await push_once(c, force=True, senders={Platform.TELEGRAM: dying})
    restarted = RecordingSender()
    await push_once(c, force=True, senders={Platform.TELEGRAM: restarted})
    everything = dying.log + restarted.log
    assert [k for k, *_ in everything] == ["header", "header", "paper", "paper"]  # the header twice, once per crash
    await push_once(c, force=True, senders={Platform.TELEGRAM: restarted})
    assert len(restarted.log) == 3


async def test_a_failure_while_recording_a_failure_keeps_the_lock_until_every_chat_is_done(
    components: Components, fake_arxiv: FakeArxiv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 5: the database fails as a chat's failure is recorded; push_once must not return (and
    release the push lock) while another chat's sends are still running."""
    c = components
    await subscribe(c, "100", "cat:cs.CV")
    await subscribe(c, "200", "cat:cs.CV")
    ids = add_papers(fake_arxiv, "20", ["A", "B", "C"])
    await announce(c, fake_arxiv, MONDAY, ids)

    class SlowFor200(RecordingSender):
        async def send_paper(self, chat: Chat, summary: Summary, images: list[Path], why: object = None) -> None:
            if chat.chat_id == "200":
                await asyncio.sleep(0.05)
            await super().send_paper(chat, summary, images)

    sender = SlowFor200()
    sender.fail("header", RuntimeError("boom"), chat="100")

    async def record_failure(kind: str, detail: str) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(c.store, "record_failure", record_failure)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    # By the time the error came out, chat 200's push had finished.
    assert sender.papers_to("200") == ids
    chat200 = await c.store.get_chat(Platform.TELEGRAM, "200")
    assert chat200 is not None and [s for _, s in await statuses(c, chat200)] == ["sent"] * 3


async def test_a_row_claimed_by_another_pusher_is_not_sent_again(components: Components, fake_arxiv: FakeArxiv) -> None:
    """Without the push lock (two pushers racing), the conditional claim lets one of them send a row."""
    c = components
    chat = await subscribe(c, "100", "cat:cs.CV")
    ids = add_papers(fake_arxiv, "20", ["A"])
    await announce(c, fake_arxiv, MONDAY, ids)
    await c.store.ledger_add(chat.id, [(ids[0], MONDAY, "cat:cs.CV")])  # type: ignore[arg-type]
    (row,) = await c.store.ledger_open(chat.id)  # type: ignore[arg-type]
    first, second = await asyncio.gather(c.store.ledger_claim([row.id]), c.store.ledger_claim([row.id]))
    assert sorted([first, second]) == [[], [row.id]]


async def test_a_chat_that_comes_back_gets_its_last_announcement_not_its_backlog(
    components: Components, fake_arxiv: FakeArxiv
) -> None:
    """Item 8: switched off for weeks, it writes again: the latest announcement's papers at most."""
    c = components
    chat = await subscribe(c, "100", "cat:cs.CV")
    await subscribe(c, "200", "cat:cs.CV")  # keeps the topic polled while chat 100 is off
    sender = RecordingSender()
    monday = add_papers(fake_arxiv, "20", ["A", "B"])
    await announce(c, fake_arxiv, MONDAY, monday)
    sender.fail("header", ChatGone("Forbidden: bot was blocked by the user"))
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    assert not (await c.store.get_chat(Platform.TELEGRAM, "100")).active  # type: ignore[union-attr]
    tuesday = add_papers(fake_arxiv, "30", ["C", "D"])
    await announce(c, fake_arxiv, TUESDAY, tuesday)
    wednesday = date(2024, 5, 8)
    wed = add_papers(fake_arxiv, "40", ["E"])
    await announce(c, fake_arxiv, wednesday, wed)

    await c.store.ensure_chat(Chat(Platform.TELEGRAM, "100", ChatKind.PRIVATE))  # it writes again
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})

    assert sender.papers_to("100") == wed
    assert [e for e in sender.log if e[0] == "header" and e[1] == "100"] == [("header", "100", "cat:cs.CV — 2024-05-08: 1")]
    # Its unsent rows from before are closed, not left pending for ever.
    assert await c.store.count_pending_deliveries() == 0
    assert await last_pushed(c, chat) == wednesday
