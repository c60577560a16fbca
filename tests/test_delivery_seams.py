"""Issue 9 seams, found by a hostile review after the merge: what the branches' pieces did
together that none of them did alone. Real polls against the fake arXiv; real senders against
the fake Bot API where the break is at the wire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from datetime import UTC, date, datetime

import pytest

from bot.app import Components
from bot.arxiv_source import ArxivSource
from bot.delivery import push_once
from bot.models import Paper, Platform
from bot.poller import Poller
from tests.fakes.arxiv import FakeArxiv
from tests.test_poller import subscribed_last_week
from tests.test_push import MONDAY, RecordingSender, add_papers, subscribe


@pytest.fixture
async def c(components: Components) -> AsyncIterator[Components]:
    """Components whose arXiv client backs off in milliseconds."""
    await components.arxiv.aclose()
    components.arxiv = ArxivSource(
        components.settings.arxiv_api_url, components.settings.arxiv_rss_url, components.limiter, backoff_base=0.001
    )
    yield components


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def paper(arxiv_id: str, title: str = "A paper") -> Paper:
    return Paper(
        arxiv_id=arxiv_id, version=1, title=title, authors=["Ada"], abstract="x", categories=["cs.CV"],
        published=datetime(2024, 5, 3, tzinfo=UTC), updated=datetime(2024, 5, 3, tzinfo=UTC),
        abs_url=f"https://arxiv.org/abs/{arxiv_id}v1",
    )


async def test_a_lagging_paper_awaited_for_two_topics_reaches_both_chats(c: Components, fake_arxiv: FakeArxiv) -> None:
    """A paper the API does not know yet is awaited for the topics that matched it. A topic
    subscribed later that matches it too (the announcement is matched again for it) must add to
    those topics, not replace them: the first chat lost the paper for good."""
    await subscribe(c, "100", "cat:cs.CV")
    a, b = add_papers(fake_arxiv, "20", ["Alpha", "Diffusion beta"])
    fake_arxiv.lagging.add(b)
    fake_arxiv.set_listing("cs.CV", MONDAY, [a, b])
    await subscribed_last_week(c)
    await Poller(c, clock=lambda: at(MONDAY, 8)).run_once()
    assert [r[0] for r in await c.store.awaiting_papers()] == [b]

    await subscribe(c, "200", "cat:cs.CV AND ti:diffusion")  # after the poll: the listing is matched again for it
    report = await Poller(c, clock=lambda: at(MONDAY, 9)).run_once()
    assert [r[0] for r in await c.store.awaiting_papers()] == [b]
    assert report.awaiting == 1 and "1 announced paper(s) not in the API yet" in str(report)  # not 2
    fake_arxiv.lagging.clear()
    await Poller(c, clock=lambda: at(MONDAY, 10)).run_once()

    sender = RecordingSender()
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    assert sender.papers_to("100") == [a, b]
    assert sender.papers_to("200") == [b]


async def test_a_list_in_several_messages_is_not_sent_again_from_its_start(
    c: Components, fake_arxiv: FakeArxiv
) -> None:
    """The papers over a chat's maximum go out as a list that may take several messages. When a
    later one fails (a 502), the papers of the messages that went out are delivered: the retry
    sends the rest only. It sent the whole list again, so its first messages came twice without
    any crash."""
    from telegram.ext import ExtBot

    from bot.telegram_bot import TelegramSender
    from tests.fakes.telegram import TOKEN, FakeTelegram

    chat = await subscribe(c, "100", "cat:cs.CV", max_papers=1)
    ids = add_papers(fake_arxiv, "30", [f"Paper {n} " + "on a long title " * 22 for n in range(40)])
    fake_arxiv.set_listing("cs.CV", MONDAY, ids)
    await subscribed_last_week(c)
    await Poller(c, clock=lambda: at(MONDAY, 8)).run_once()
    with FakeTelegram() as tg:
        async with ExtBot(TOKEN, base_url=f"{tg.url}/bot", base_file_url=f"{tg.url}/file/bot") as bot:
            senders = {Platform.TELEGRAM: TelegramSender(bot, c.buttons, c.store)}
            # header, the one full post, the list's first message: then the second one fails.
            tg.fail("sendMessage", 100, 502, "Bad Gateway", after=3)
            first = await push_once(c, senders=senders, clock=lambda: at(MONDAY, 12))
            assert first.failures == 1 and 0 < first.listed < len(ids) - 1, first
            second = await push_once(c, senders=senders, clock=lambda: at(MONDAY, 13))
            assert second.papers + second.listed == len(ids) - 1 - first.listed, second
            texts = [call.params["text"] for call in tg.calls_to("sendMessage", 100) if call.error is None]
    for aid in ids:
        assert sum(text.count(f"arxiv.org/abs/{aid}") for text in texts) == 1, aid
    assert chat.id is not None
    assert {d.status for d in await c.store.ledger_rows(chat.id)} == {"sent"}


async def test_discord_names_the_papers_of_a_list_that_went_out_before_a_failure(
    components: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same through discord.py's REST client against the fake Discord: a list of three
    messages whose second is refused (Missing Permissions) says which papers reached the channel."""
    from pydantic import SecretStr

    from bot.discord_bot import paper_line, rest_sender
    from bot.models import Chat, ChatKind
    from bot.sender import PartlySent, PermanentSendError
    from tests.fakes.discord import FakeDiscord
    from tests.test_discord import PUSH_CHANNEL, TOKEN

    papers = [paper(f"2405.4{n:04d}", f"Paper {n} " + "on a long title " * 20) for n in range(20)]
    with FakeDiscord(TOKEN) as fake:
        fake.install(monkeypatch)
        components.settings.discord_bot_token = SecretStr(TOKEN)
        fake.fail_channel(PUSH_CHANNEL, 403, 50013, "Missing Permissions", after=1)
        async with rest_sender(components) as sender:
            with pytest.raises(PartlySent) as raised:
                await sender.send_paper_list(Chat(Platform.DISCORD, str(PUSH_CHANNEL), ChatKind.GUILD), papers)
        [first] = fake.in_channel(PUSH_CHANNEL)
    assert isinstance(raised.value.error, PermanentSendError)
    shown = {p.arxiv_id for p in papers if paper_line(p) in first.content}
    assert 0 < len(shown) < len(papers) and raised.value.sent == shown


async def test_paperbot_push_with_a_rejected_telegram_token_says_so_and_touches_nothing(
    c: Components, fake_arxiv: FakeArxiv
) -> None:
    """`paperbot push` opens its own Bot API client once the lock is held and a chat is due; a
    token the Bot API rejects (getMe 401) was "InvalidToken: Unauthorized", naming nothing to fix."""
    from pydantic import SecretStr

    from bot.senders import push_senders
    from bot.service import UserError
    from tests.fakes.telegram import TOKEN, FakeTelegram

    chat = await subscribe(c, "100", "cat:cs.CV")
    ids = add_papers(fake_arxiv, "50", ["Alpha"])
    fake_arxiv.set_listing("cs.CV", MONDAY, ids)
    await subscribed_last_week(c)
    await Poller(c, clock=lambda: at(MONDAY, 8)).run_once()
    with FakeTelegram() as tg:
        c.settings.telegram_bot_token = SecretStr("123:wrong-" + TOKEN)
        c.settings.telegram_api_base_url = tg.url
        with pytest.raises(UserError) as err:
            await push_once(c, force=True, senders=lambda: push_senders(c.settings, c), wait=False)
    assert "TELEGRAM_BOT_TOKEN" in str(err.value) and "wrong" not in str(err.value)
    assert err.value.exit_code == 1
    assert chat.id is not None and await c.store.ledger_rows(chat.id) == []


async def test_a_flood_wait_the_limiter_gives_up_on_still_pauses_every_send(c: Components) -> None:
    """A 429 whose retry_after outlasts the limiter's retries becomes a failure of that message
    (tried again after a backoff); the other chats' sends must still wait out the retry_after.
    They went on at once, into more 429s (Telegram lengthens the wait for a bot that ignores it)."""
    import asyncio

    from telegram.error import RetryAfter
    from telegram.ext import ExtBot

    from bot.telegram_bot import PacedRateLimiter
    from tests.fakes.telegram import TOKEN, FakeTelegram

    with FakeTelegram() as tg:
        limiter = PacedRateLimiter(max_retries=0)
        async with ExtBot(TOKEN, base_url=f"{tg.url}/bot", base_file_url=f"{tg.url}/file/bot", rate_limiter=limiter) as bot:
            tg.retry_after("sendMessage", 100, seconds=1)
            with pytest.raises(RetryAfter):
                await bot.send_message(100, "first")
            loop = asyncio.get_running_loop()
            started = loop.time()
            await bot.send_message(200, "another chat")
            assert loop.time() - started >= 0.9


async def test_a_stop_mid_push_lets_the_sends_in_flight_finish_and_starts_no_more(
    c: Components, fake_arxiv: FakeArxiv
) -> None:
    """SIGTERM during a push (a deploy): `run` gives the step in progress 5 s, then cancels it,
    and every message in flight (one per chat being pushed, up to 64) was left `sending` and sent
    again at the next start. Once stopping, the push must claim no new message, so the messages
    in flight finish within the grace and nothing repeats."""
    import asyncio

    from bot.models import Chat, Summary
    from bot.runner import until_stopped
    from bot.scheduler import Scheduler

    stop = asyncio.Event()

    class StoppedMidPush(RecordingSender):
        async def send_paper(self, chat: Chat, summary: Summary, images: list, why: object = None) -> None:  # type: ignore[type-arg]
            stop.set()  # SIGTERM arrives while this post is on its way
            await asyncio.sleep(0.05)
            await super().send_paper(chat, summary, images, why)

    chat = await subscribe(c, "100", "cat:cs.CV", timezone="UTC", push_time="09:00")
    ids = add_papers(fake_arxiv, "60", ["Alpha", "Beta", "Gamma"])
    fake_arxiv.set_listing("cs.CV", MONDAY, ids)
    await subscribed_last_week(c)
    await Poller(c, clock=lambda: at(MONDAY, 8)).run_once()
    sender = StoppedMidPush()
    scheduler = Scheduler(c, {Platform.TELEGRAM: sender}, clock=lambda: at(MONDAY, 10), tick=0.01)
    await asyncio.wait_for(until_stopped(scheduler.run(stop), stop, grace=5), 10)

    assert sender.papers_to("100") == ids[:1]
    assert chat.id is not None
    rows = {d.arxiv_id: (d.status, d.attempts) for d in await c.store.ledger_rows(chat.id)}
    assert rows == {ids[0]: ("sent", 1), ids[1]: ("pending", 0), ids[2]: ("pending", 0)}
    # The next start sends the rest without a second header, nothing twice.
    after = RecordingSender()
    await push_once(c, senders={Platform.TELEGRAM: after}, clock=lambda: at(MONDAY, 11))
    assert after.papers_to("100") == ids[1:] and [k for k, *_ in after.log].count("header") == 0


async def test_status_lists_failures_before_rows_given_up_because_the_chat_was_off(db_target: str) -> None:
    """`paperbot status` shows the newest given-up messages. A row given up when its chat came
    back after being switched off has no retry time: PostgreSQL sorts those NULLs first in a
    descending order (SQLite last), so on PostgreSQL they hid the failures that need a look."""
    from bot.models import Chat, ChatKind
    from bot.store import Store

    async with await Store.open(db_target) as store:
        failing = await store.ensure_chat(Chat(Platform.TELEGRAM, "100", ChatKind.PRIVATE))
        back = await store.ensure_chat(Chat(Platform.TELEGRAM, "200", ChatKind.PRIVATE))
        assert failing.id is not None and back.id is not None
        for aid in ("2405.00001", "2405.00002"):
            await store.upsert_paper(paper(aid), announced=MONDAY)
        await store.ledger_add(failing.id, [("2405.00001", MONDAY, "cat:cs.CV")])
        await store.ledger_add(back.id, [("2405.00002", MONDAY, "cat:cs.CV")])
        [row] = await store.ledger_rows(failing.id)
        await store.ledger_claim([row.id])
        await store.ledger_failed(
            [row.id], "PermanentSendError: not enough rights", retry_at=at(MONDAY, 13),
            first_failed=at(MONDAY, 12), give_up=True,
        )
        await store.execute(
            "UPDATE deliveries SET status='given_up', error='the chat was switched off' WHERE chat_pk=?", (back.id,)
        )
        count, [shown] = await store.given_up(limit=1)
    assert count == 2 and shown.what == "2405.00001" and "not enough rights" in shown.error


async def test_the_push_lock_holds_for_a_database_reached_through_a_symlink(tmp_path: Path) -> None:
    """`paperbot run` and a cron `paperbot push` on one SQLite file, one of them through a
    symlink (PAPERBOT_DB=~/paperbot.db -> /srv/paperbot/paperbot.db): the lock file was named
    after the path as given, so each took its own lock and both pushed, each resetting the
    other's messages in flight."""
    from bot.store import Store

    real = tmp_path / "srv" / "paperbot.db"
    real.parent.mkdir()
    link = tmp_path / "home.db"
    async with await Store.open(real) as a:
        link.symlink_to(real)
        async with await Store.open(link) as b:
            async with a.try_lock("push") as got_a:
                assert got_a is True
                async with b.try_lock("push") as got_b:
                    assert got_b is False


async def test_a_list_cut_short_by_a_move_goes_on_at_the_new_id(c: Components, fake_arxiv: FakeArxiv) -> None:
    """A group that became a supergroup between two messages of a list: the papers that went out
    are sent, the chat is followed to its new id, and the rest reach it there, without penalty."""
    from bot.models import Chat
    from bot.sender import ChatMoved, PartlySent

    class MovesMidList(RecordingSender):
        moved = False

        async def send_paper_list(self, chat: Chat, papers: list[Paper]) -> None:
            if not self.moved:
                self.moved = True
                self.log.append(("list", chat.chat_id, [p.arxiv_id for p in papers[:2]]))
                raise PartlySent([p.arxiv_id for p in papers[:2]], ChatMoved("-1003"))
            await super().send_paper_list(chat, papers)

    chat = await subscribe(c, "-100", "cat:cs.CV", max_papers=1)
    ids = add_papers(fake_arxiv, "70", ["A", "B", "C", "D", "E"])
    fake_arxiv.set_listing("cs.CV", MONDAY, ids)
    await subscribed_last_week(c)
    await Poller(c, clock=lambda: at(MONDAY, 8)).run_once()
    sender = MovesMidList()
    first = await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    assert (first.papers, first.listed, first.failures) == (1, 2, 0), first
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    assert sender.papers_to("-100") == ids[:3] and sorted(sender.papers_to("-1003")) == ids[3:]
    assert chat.id is not None
    rows = await c.store.ledger_rows(chat.id)
    assert {d.status for d in rows} == {"sent"} and all(d.first_failed_at is None for d in rows)
