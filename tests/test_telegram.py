"""The Telegram adapter end to end: the real python-telegram-bot Application long-polls FakeTelegram
over HTTP, papers come from FakeArxiv, summaries from the extractive summarizer. Nothing leaves
127.0.0.1, and every message the bot sends passes the fake's check of Telegram's HTML rules and limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from telegram.ext import Application

from bot.app import Components, build_components
from bot.buttons import BreakdownRef
from bot.delivery import push_once
from bot.config import load_settings
from bot.models import Chat, ChatKind, Paper, Platform, Summary, SummaryContent
from bot.sender import ChatGone, ChatMoved, PermanentSendError, TransientSendError
from bot.service import Service
from bot.telegram_bot import ADMIN_ONLY, FAILED, TelegramSender, build_application
from tests.conftest import env_for
from tests.fakes.arxiv import SEED_ID, SEED_TITLE
from tests.fakes.telegram import ANONYMOUS_ADMIN, BOT_USERNAME, TOKEN, Call, FakeTelegram, parse_html

ALICE = FakeTelegram.user(1001, "Alice")
BOB = FakeTelegram.user(1002, "Bob")


@dataclass
class Bot:
    tg: FakeTelegram
    c: Components
    app: Application  # type: ignore[type-arg]

    async def reply(self, chat: dict[str, Any], text: str, timeout: float = 15.0) -> Call:
        """The bot's message in `chat` whose HTML contains `text`."""
        return await self.tg.wait_for(
            "sendMessage", lambda c: c.chat_id == chat["id"] and text in c.params["text"], timeout
        )

    async def answer(self, chat: dict[str, Any], id_text: str) -> Call:
        """/summary's placeholder, then the edit that turned it into the answer."""
        placeholder = await self.reply(chat, f"Summarizing {id_text}…")
        mid = placeholder.result["message_id"]
        return await self.tg.wait_for(
            "editMessageText", lambda c: c.chat_id == chat["id"] and c.params["message_id"] == mid, 30
        )

    def photos(self, chat_id: int) -> list[Call]:
        return [c for c in self.tg.calls if c.chat_id == chat_id and c.method in ("sendPhoto", "sendMediaGroup")]


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


@contextlib.asynccontextmanager
async def running(c: Components) -> AsyncIterator[Application]:  # type: ignore[type-arg]
    """Start the Application as `paperbot run` does, with a short long-poll for quick tests."""
    app = build_application(c)
    await app.initialize()
    assert app.post_init is not None
    await app.post_init(app)
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0, timeout=1)
    try:
        yield app
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()


@pytest.fixture
async def bot(
    request: pytest.FixtureRequest, tmp_path: Path, fake_arxiv: Any, tg: FakeTelegram
) -> AsyncIterator[Bot]:
    env: dict[str, Any] = env_for(tmp_path, fake_arxiv)
    env.update(TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE_URL=tg.url)
    env.update(getattr(request, "param", {}))  # more settings, by indirect parametrization
    c = await build_components(load_settings(**env))
    try:
        async with running(c) as app:
            yield Bot(tg, c, app)
    finally:
        await c.aclose()


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def buttons(call: Call) -> list[dict[str, Any]]:
    return [b for row in call.params["reply_markup"]["inline_keyboard"] for b in row]


# --- private chats: /start, /summary, the breakdown button ---------------------------------------


async def test_private_start_summary_and_breakdown(bot: Bot) -> None:
    tg, chat = bot.tg, bot.tg.private_chat(ALICE)
    tg.push_message(chat, "/start", ALICE)
    help_text = parse_html((await bot.reply(chat, "/subscribe QUERY")).params["text"])
    assert "/summary 2405.01872" in help_text and "ANDNOT" in help_text
    stored = await bot.c.store.get_chat(Platform.TELEGRAM, str(ALICE["id"]))
    assert stored is not None and stored.kind == ChatKind.PRIVATE and stored.active
    assert [c["command"] for c in tg.calls_to("setMyCommands")[0].params["commands"]] == [
        "start", "help", "subscribe", "unsubscribe", "topics", "summary", "settings", "digest", "ask"
    ]

    tg.push_message(chat, "/summary 2405.01872", ALICE)
    card = await bot.answer(chat, "2405.01872")
    assert tg.calls_to("sendChatAction", chat["id"])[0].params["action"] == "typing"
    html = card.params["text"]
    assert html.startswith(f'<b><a href="https://arxiv.org/abs/2405.01872v1">{SEED_TITLE}</a></b>')
    text = parse_html(html)
    assert "Yichun Tai" in text and "Summary" in text and "Key Takeaways" in text
    assert [(b["text"], b.get("callback_data"), b.get("url")) for b in buttons(card)] == [
        ("Full breakdown", bot.c.buttons.breakdown("2405.01872", 1, "en"), None),
        ("PDF", None, f"{bot.c.settings.arxiv_api_url.rsplit('/api', 1)[0]}/pdf/2405.01872v1"),
        ("arXiv", None, "https://arxiv.org/abs/2405.01872v1"),
    ]
    paper = await bot.c.store.get_paper(SEED_ID)
    assert paper is not None
    thumbs = await bot.c.pdfs.thumbnails(paper)
    await tg.wait_for("sendPhoto" if len(thumbs) == 1 else "sendMediaGroup", lambda c: c.chat_id == chat["id"])
    sizes = [size for c in bot.photos(chat["id"]) for size in c.files.values()]
    assert thumbs and sorted(sizes) == sorted(p.stat().st_size for p in thumbs)
    assert bot.photos(chat["id"])[0].params["reply_parameters"]["message_id"] == card.params["message_id"]

    # The button, pressed later: the numbered breakdown of the same (cached) summary.
    tg.push_callback(tg.message(chat["id"], card.params["message_id"]), ALICE, buttons(card)[0]["callback_data"])
    await tg.wait_for("answerCallbackQuery")
    first = parse_html((await bot.reply(chat, "<b>Full breakdown</b>")).params["text"])
    summary = await bot.c.summaries.cached(paper, "en")
    assert summary is not None
    assert SEED_TITLE in first and "1. " in first and summary.content.background[:60] in first
    assert await bot.c.store.quota_used(f"telegram:{ALICE['id']}") == 1  # the button cost nothing


async def test_long_breakdown_is_split_and_cached_summary_is_free(bot: Bot, fake_arxiv: Any) -> None:
    tg, chat = bot.tg, bot.tg.private_chat(ALICE)
    paper = Paper(
        "2401.00001", 1, "A paper with a very long breakdown", ["A. Author"], "Abstract.", ["cs.CL"],
        datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC), "https://arxiv.org/abs/2401.00001v1",
    )
    long = {name: f"{name.upper()}-START " + "lorem ipsum & dolor <sit> amet " * 110 + f"{name.upper()}-END"
            for name in ("background", "prior_work", "results", "conclusion")}
    content = SummaryContent(
        title_translated="", summary="One line.", key_takeaways=["one", "two", "three"], keywords=["k"],
        method=["step one", "step two"], **long,
    )
    primary = bot.c.summaries.primary
    await bot.c.store.upsert_paper(paper)
    await bot.c.store.put_summary(
        Summary(paper, content, "en", primary.model_key, prompt_version=primary.prompt_version), primary.model_key
    )
    api_before = fake_arxiv.count("api")

    tg.push_message(chat, "/summary 2401.00001", ALICE)
    card = await bot.answer(chat, "2401.00001")
    assert "A paper with a very long breakdown" in parse_html(card.params["text"])
    assert fake_arxiv.count("api") == api_before  # served from the store
    assert await bot.c.store.quota_used(f"telegram:{ALICE['id']}") == 0  # cached summaries are free

    before = len(tg.calls_to("sendMessage", chat["id"]))
    tg.push_callback(tg.message(chat["id"], card.params["message_id"]), ALICE, buttons(card)[0]["callback_data"])
    await bot.reply(chat, "CONCLUSION-END")
    await tg.idle()
    pieces = [parse_html(c.params["text"]) for c in tg.calls_to("sendMessage", chat["id"])[before:]]
    assert len(pieces) >= 4 and all(len(p.encode("utf-16-le")) // 2 <= 4096 for p in pieces)
    joined = "".join(pieces)
    marks = [joined.index(f"{n.upper()}-{e}") for n in long for e in ("START", "END")]
    assert marks == sorted(marks) and "lorem ipsum & dolor <sit> amet" in joined


async def test_title_with_markup_characters_arrives_escaped(bot: Bot, fake_arxiv: Any) -> None:
    tg, chat = bot.tg, bot.tg.private_chat(ALICE)
    title = "Why <b>bold</b> & x > y? A <study>"
    fake_arxiv.add_paper("2402.00002", title=title, published=datetime(2024, 2, 1, tzinfo=UTC),
                         comment="5 pages & <3 figures>")
    tg.push_message(chat, "/summary 2402.00002", ALICE)
    card = await bot.answer(chat, "2402.00002")
    html = card.params["text"]
    assert "Why &lt;b&gt;bold&lt;/b&gt; &amp; x &gt; y? A &lt;study&gt;" in html
    text = parse_html(html)  # well-formed: the fake (like Telegram) refuses anything else
    assert title in text and "5 pages & <3 figures>" in text


# --- groups, channels, forum topics --------------------------------------------------------------


async def test_group_only_admins_change_topics_and_settings(bot: Bot) -> None:
    tg = bot.tg
    group = tg.group(-100200, "Lab")
    tg.set_member(group["id"], ALICE["id"], "administrator")

    tg.push_message(group, "/subscribe cat:cs.CV", BOB)
    assert parse_html((await bot.reply(group, "Only admins")).params["text"]) == ADMIN_ONLY
    stored = await bot.c.store.get_chat(Platform.TELEGRAM, "-100200")
    assert stored is not None and stored.kind == ChatKind.SUPERGROUP and stored.title == "Lab"
    assert await bot.c.store.list_topics(stored.id) == []  # type: ignore[arg-type]

    tg.push_message(group, f"/subscribe@{BOT_USERNAME} cat:cs.CV AND ti:diffusion", ALICE)
    answer = await bot.reply(group, "Subscribed: topic #")
    topics = await bot.c.store.list_topics(stored.id)  # type: ignore[arg-type]
    assert len(topics) == 1 and f"#{topics[0].id}" in answer.params["text"]
    assert "ti:diffusion" in topics[0].query
    assert f'<a href="https://arxiv.org/abs/{SEED_ID}' in answer.params["text"]  # the preview
    assert SEED_TITLE in parse_html(answer.params["text"])

    tg.push_message(group, "/settings max 5", BOB)
    await bot.reply(group, "Only admins")
    tg.push_message(group, "/topics", BOB)  # anyone may look
    assert f"#{topics[0].id}" in (await bot.reply(group, "Topics:")).params["text"]
    tg.push_message(group, "/settings", BOB)
    assert "10 papers per push" in parse_html((await bot.reply(group, "Settings of this chat")).params["text"])
    tg.push_message(group, "/settings max 5", ALICE)
    await bot.reply(group, "Settings changed.")
    changed = await bot.c.store.get_chat(Platform.TELEGRAM, "-100200")
    assert changed is not None and changed.max_papers == 5
    checked = {c.params["user_id"] for c in tg.calls_to("getChatMember", group["id"])}
    assert checked == {ALICE["id"], BOB["id"]}
    assert len(tg.calls_to("getChatMember", group["id"])) == 2  # cached after the first look


async def test_anonymous_admin_and_channel_posts(bot: Bot) -> None:
    tg = bot.tg
    group = tg.group(-100300, "Anonymous admins")
    tg.push_message(group, "/settings language zh", ANONYMOUS_ADMIN, sender_chat=group)
    await bot.reply(group, "Settings changed.")
    stored = await bot.c.store.get_chat(Platform.TELEGRAM, "-100300")
    assert stored is not None and stored.language == "zh"
    assert tg.calls_to("getChatMember", group["id"]) == []
    tg.push_message(group, f"/summary {SEED_ID}", ANONYMOUS_ADMIN, sender_chat=group)
    await bot.answer(group, SEED_ID)
    # All anonymous admins everywhere share one user id: the quota is the group's instead.
    assert await bot.c.store.quota_used("telegram:-100300") == 1
    # Someone writing as their own channel is not the group's admin.
    other = tg.channel(-100301, "Someone's channel")
    tg.push_message(group, "/unsubscribe all", ANONYMOUS_ADMIN | {"id": 136817688}, sender_chat=other)
    await bot.reply(group, "Only admins")

    channel = tg.channel(-100400, "Papers daily")
    tg.push_channel_post(channel, "/subscribe au:hinton")
    await bot.reply(channel, "Subscribed: topic #")
    stored = await bot.c.store.get_chat(Platform.TELEGRAM, "-100400")
    assert stored is not None and stored.kind == ChatKind.CHANNEL
    assert [t.query for t in await bot.c.store.list_topics(stored.id)] == ["au:hinton"]  # type: ignore[arg-type]
    tg.push_channel_post(channel, f"/summary@{BOT_USERNAME} 1707.08567")
    await bot.answer(channel, "1707.08567")
    assert await bot.c.store.quota_used("telegram:-100400") == 1  # a channel's quota is the channel's

    # The channel's discussion group gets each post as an automatic forward: answered in the channel only.
    discussion = tg.group(-100401, "Papers daily chat")
    tg.push_message(discussion, "/topics", sender_chat=channel, is_automatic_forward=True)
    await tg.idle()
    assert tg.calls_to("sendMessage", discussion["id"]) == []


async def test_forum_topic_replies_stay_in_their_thread(bot: Bot) -> None:
    tg = bot.tg
    forum = tg.group(-100500, "Forum", forum=True)
    tg.push_message(forum, "/help", ALICE, thread_id=77)
    assert (await bot.reply(forum, "/subscribe QUERY")).params["message_thread_id"] == 77
    tg.push_message(forum, f"/summary {SEED_ID}", ALICE, thread_id=77)
    await bot.answer(forum, SEED_ID)
    await tg.idle()
    sends = [c for c in tg.calls if c.chat_id == forum["id"] and c.method.startswith("send")]
    assert {c.method for c in sends} >= {"sendMessage", "sendChatAction"} and bot.photos(forum["id"])
    assert all(c.params.get("message_thread_id") == 77 for c in sends)
    tg.push_message(forum, "/topics", ALICE)  # the General topic: no thread id
    assert "message_thread_id" not in (await bot.reply(forum, "No topics yet")).params


# --- quota, errors, blocked and migrated chats -----------------------------------------------------


@pytest.mark.parametrize("bot", [{"PAPERBOT_SUMMARY_QUOTA": "1"}], indirect=True)
async def test_quota_refuses_new_summaries_but_serves_cached_ones(bot: Bot) -> None:
    tg, chat = bot.tg, bot.tg.private_chat(ALICE)
    tg.push_message(chat, f"/summary {SEED_ID}", ALICE)
    assert SEED_TITLE in parse_html((await bot.answer(chat, SEED_ID)).params["text"])
    tg.push_message(chat, "/summary 1707.08567", ALICE)
    refused = parse_html((await bot.answer(chat, "1707.08567")).params["text"])
    assert refused.startswith("You have used your 1 new summaries for this hour.")
    assert "already summarized are always free" in refused
    tg.push_message(chat, f"/summary arXiv:{SEED_ID}v1", ALICE)
    assert SEED_TITLE in parse_html((await bot.answer(chat, f"arXiv:{SEED_ID}v1")).params["text"])


async def test_bad_id_and_bad_query_get_clear_errors(bot: Bot) -> None:
    tg, chat = bot.tg, bot.tg.private_chat(ALICE)
    tg.push_message(chat, "/summary <b>nope</b>", ALICE)
    error = await bot.answer(chat, "&lt;b&gt;nope&lt;/b&gt;")
    assert parse_html(error.params["text"]).startswith("'<b>nope</b>' is not an arXiv id. Accepted forms: 2405.01872")
    tg.push_message(chat, "/summary 2405.99999", ALICE)
    assert "arxiv.org" in parse_html((await bot.answer(chat, "2405.99999")).params["text"])

    tg.push_message(chat, "/subscribe ti:(diffusion AND", ALICE)
    reply = await bot.reply(chat, "Could not read that query")
    assert reply.params["text"] == (
        'Could not read that query: expected a term after &quot;AND&quot; at position 17:\n'
        "<pre>  ti:(diffusion AND\n                   ^</pre>"
    )
    tg.push_message(chat, "/summary", ALICE)
    await bot.reply(chat, "Give a paper id, e.g. /summary 2405.01872")


async def test_retry_after_is_waited_out(bot: Bot) -> None:
    tg, chat = bot.tg, bot.tg.private_chat(ALICE)
    tg.retry_after("sendMessage", chat["id"], seconds=1)
    tg.push_message(chat, "/topics", ALICE)
    await bot.reply(chat, "No topics yet")
    attempts = [c for c in tg.calls if c.method == "sendMessage" and c.chat_id == chat["id"]]
    assert [bool(c.error and "retry after 1" in c.error) for c in attempts] == [True, False]


async def leave_a_match(c: Components, chat: Chat, query: str) -> None:
    """What a poll leaves behind for `chat`: the seed paper matched by its topic `query`."""
    paper = await Service(c).find_paper(SEED_ID)
    await c.store.add_topic(chat.id, query)  # type: ignore[arg-type]
    [topic_id] = [t for t, q, _ in await c.store.active_topics() if q == query]
    await c.store.add_matches([(topic_id, paper.arxiv_id, date(2024, 5, 6))])
    await c.store.set_meta("last_announcement", "2024-05-06")


async def test_blocked_chat_is_switched_off_and_back_on(bot: Bot) -> None:
    tg, store = bot.tg, bot.c.store
    chat = await bot.c.store.ensure_chat(Chat(Platform.TELEGRAM, str(BOB["id"]), ChatKind.PRIVATE))
    tg.forbidden(BOB["id"])
    sender = TelegramSender(bot.app.bot, bot.c.buttons)
    with pytest.raises(ChatGone):
        await sender.send_header(chat, "cs.CV", date(2024, 5, 6), 3)
    # On a push, the core switches the chat off (its topics are kept).
    await leave_a_match(bot.c, chat, "cat:cs.CV")
    report = await push_once(bot.c, force=True, senders={Platform.TELEGRAM: sender})
    assert report.switched_off == 1
    assert (await store.get_chat(Platform.TELEGRAM, str(BOB["id"]))).active is False  # type: ignore[union-attr]
    assert [t.query for t in await store.list_topics(chat.id)] == ["cat:cs.CV"]  # type: ignore[arg-type]

    tg.clear_failures()  # Bob unblocks the bot and writes again
    tg.push_message(tg.private_chat(BOB), "/start", BOB)
    await bot.reply(tg.private_chat(BOB), "/subscribe QUERY")
    assert (await store.get_chat(Platform.TELEGRAM, str(BOB["id"]))).active is True  # type: ignore[union-attr]

    # Telegram tells the bot when a user blocks it.
    tg.push_my_chat_member(tg.private_chat(BOB), BOB, "member", "kicked")

    async def bob_off() -> bool:
        return (await store.get_chat(Platform.TELEGRAM, str(BOB["id"]))).active is False  # type: ignore[union-attr]

    await wait_until(bob_off)

    # Removed from a group while a command was on its way: the answer fails, the chat goes off.
    group = tg.group(-100600, "Gone")
    tg.forbidden(group["id"], "sendMessage")
    tg.push_message(group, "/topics", ALICE)

    async def off() -> bool:
        stored = await store.get_chat(Platform.TELEGRAM, "-100600")
        return stored is not None and not stored.active

    await wait_until(off)


async def test_migrated_group_keeps_its_topics(bot: Bot) -> None:
    tg, store = bot.tg, bot.c.store
    old = tg.group(-600, "Reading group", kind="group")
    tg.set_member(old["id"], ALICE["id"], "creator")
    tg.push_message(old, "/subscribe cat:cs.CV", ALICE)
    await bot.reply(old, "Subscribed")
    tg.push_migration(old, -100600601, ALICE)

    async def moved() -> bool:
        return await store.get_chat(Platform.TELEGRAM, "-100600601") is not None

    await wait_until(moved)
    new = await store.get_chat(Platform.TELEGRAM, "-100600601")
    assert new is not None and new.kind == ChatKind.SUPERGROUP
    assert [t.query for t in await store.list_topics(new.id)] == ["cat:cs.CV"]  # type: ignore[arg-type]
    assert await store.get_chat(Platform.TELEGRAM, "-600") is None

    # Found out on a push instead: the sender says where to, the core moves the chat and sends there.
    other = await store.ensure_chat(Chat(Platform.TELEGRAM, "-700", ChatKind.GROUP, "Other"))
    sender = TelegramSender(bot.app.bot, bot.c.buttons)
    tg.migrated(-700, -100700, "sendMessage", times=1)
    with pytest.raises(ChatMoved) as moved_to:
        await sender.send_header(other, "au:hinton", date(2024, 5, 6), 1)
    assert moved_to.value.new_chat_id == "-100700"
    await leave_a_match(bot.c, other, "au:hinton")
    tg.migrated(-700, -100700, "sendMessage", times=1)
    await push_once(bot.c, force=True, senders={Platform.TELEGRAM: sender})
    after = await store.get_chat(Platform.TELEGRAM, "-100700")
    assert after is not None
    assert [t.query for t in await store.list_topics(after.id)] == ["au:hinton"]  # type: ignore[arg-type]
    assert tg.calls_to("sendMessage", -100700)  # the push went to the new id


async def test_push_sends_header_paper_with_photos_and_list(bot: Bot, tmp_path: Path) -> None:
    tg, store = bot.tg, bot.c.store
    channel = tg.channel(-100800, "Digest")
    chat = await store.ensure_chat(Chat(Platform.TELEGRAM, "-100800", ChatKind.CHANNEL, "Digest"))
    summary = (await Service(bot.c).summarize(SEED_ID, "en", with_images=False)).summary
    images = []
    for i, color in enumerate(["red", "green", "blue"]):
        buf = BytesIO()
        Image.new("RGB", (64 + i, 48), color).save(buf, "JPEG")
        images.append(tmp_path / f"fig{i}.jpg")
        images[-1].write_bytes(buf.getvalue())
    sender = TelegramSender(bot.app.bot, bot.c.buttons)
    await sender.send_header(chat, "cat:cs.CV AND ti:diffusion", date(2024, 5, 6), 2)
    await sender.send_paper(chat, summary, images)
    await sender.send_paper_list(chat, [summary.paper])
    texts = [parse_html(c.params["text"]) for c in tg.calls_to("sendMessage", channel["id"])]
    assert texts[0] == "cat:cs.CV AND ti:diffusion — 2024-05-06: 2 new papers"
    assert texts[1].startswith(SEED_TITLE) and texts[2].startswith("More papers today:")
    card = tg.calls_to("sendMessage", channel["id"])[1]
    assert [b["text"] for b in buttons(card)] == ["Full breakdown", "PDF", "arXiv"]
    group = tg.calls_to("sendMediaGroup", channel["id"])[0]
    assert sorted(group.files.values()) == sorted(p.stat().st_size for p in images)
    assert group.params["reply_parameters"]["message_id"] == card.result["message_id"]

    # Figures Telegram refuses do not fail the post (the push would send it again).
    tg.fail("sendMediaGroup", channel["id"], 400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
    await sender.send_paper(chat, summary, images)
    assert len(tg.calls_to("sendMessage", channel["id"])) == 4
    # Nor do figures lost to a server error after the card went out.
    tg.fail("sendMediaGroup", channel["id"], 502, "Bad Gateway")
    await sender.send_paper(chat, summary, images)
    assert len(tg.calls_to("sendMessage", channel["id"])) == 5


async def test_digest_sends_todays_matches_or_says_there_are_none(bot: Bot) -> None:
    tg, store, chat = bot.tg, bot.c.store, bot.tg.private_chat(ALICE)
    tg.push_message(chat, "/digest", ALICE)
    await bot.reply(chat, "No new papers match this chat")

    tg.push_message(chat, "/subscribe ti:diffusion", ALICE)
    await bot.reply(chat, "Subscribed")
    await Service(bot.c).find_paper(SEED_ID)  # stored, as the poll would have
    [(topic_id, _, _)] = await store.active_topics()
    await store.add_matches([(topic_id, SEED_ID, date(2024, 5, 6))])
    await store.set_meta("last_announcement", "2024-05-06")
    tg.push_message(chat, "/digest", ALICE)
    header = await bot.reply(chat, "2024-05-06: 1 new paper")
    card = await tg.wait_for("sendMessage", lambda c: c.chat_id == chat["id"] and "reply_markup" in c.params)
    assert card.result["message_id"] > header.result["message_id"] and SEED_TITLE in card.params["text"]
    assert bot.c.buttons.read(buttons(card)[0]["callback_data"]) == BreakdownRef("2405.01872", 1, "en")


async def test_failures_are_reported_and_the_token_never_logged(
    bot: Bot, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    # As bot.logs.setup_logging does: httpx's request lines carry the URL, and so the token.
    monkeypatch.setattr(logging.getLogger("httpx"), "level", logging.WARNING)
    tg = bot.tg
    group = tg.group(-100900, "Flaky")
    tg.fail("getChatMember", group["id"], 500, "Internal Server Error")
    tg.push_message(group, "/subscribe cat:cs.CV", BOB)
    assert parse_html((await bot.reply(group, "went wrong")).params["text"]) == FAILED
    chat = tg.private_chat(ALICE)
    tg.push_message(chat, f"/summary {SEED_ID}", ALICE)
    await bot.answer(chat, SEED_ID)
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "bot.telegram_bot"]
    assert failures and "NetworkError" in failures[0].getMessage()
    for record in caplog.records:
        assert TOKEN not in record.getMessage() and TOKEN not in (record.exc_text or "")
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("status", "description", "expected"),
    [
        (400, "Bad Request: not enough rights to send text messages to the chat", PermanentSendError),
        (502, "Bad Gateway", TransientSendError),
        (500, "Internal Server Error", TransientSendError),
    ],
)
async def test_push_errors_are_told_apart(bot: Bot, status: int, description: str, expected: type) -> None:
    """The sender says whether a failed push message is worth retrying soon (issue 9, item 2 and 3)."""
    chat = await bot.c.store.ensure_chat(Chat(Platform.TELEGRAM, "-100900", ChatKind.SUPERGROUP, "Quiet"))
    bot.tg.fail("sendMessage", -100900, status, description)
    with pytest.raises(expected) as err:
        await TelegramSender(bot.app.bot, bot.c.buttons).send_header(chat, "cs.CV", date(2024, 5, 6), 1)
    assert description.split(": ")[-1].lower() in str(err.value).lower()


async def test_the_push_bot_sends_a_chats_messages_in_order(bot: Bot) -> None:
    """`push_bot`'s paced limiter queues a chat's messages behind each other, in the order asked."""
    from bot.telegram_bot import PacedRateLimiter, push_bot

    async with push_bot(bot.c.settings, rate_limiter=PacedRateLimiter(scale=20)) as pusher:
        await asyncio.gather(*(pusher.send_message(4242, f"message {i}") for i in range(4)))
    calls = bot.tg.calls_to("sendMessage", 4242)
    assert [c.params["text"] for c in calls] == [f"message {i}" for i in range(4)]
