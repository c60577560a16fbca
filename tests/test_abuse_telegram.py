"""Abuse, cost and bad input on Telegram (issue 10), end to end: the real Application long-polls
FakeTelegram, which refuses what Telegram refuses (bad HTML, long texts, callback data over 64
bytes, answers over 200 characters). Summaries come from the extractive summarizer, or from
FakeGemini where the number of LLM calls is the point.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.app import Components, build_components
from bot.config import load_settings
from bot.models import Chat, ChatKind, Platform, Summary, SummaryContent
from bot.service import Service, UserError
from bot.telegram_bot import (
    ALREADY_POSTED,
    BEING_POSTED,
    FAILED,
    STALE_BUTTON,
    TelegramSender,
)
from tests.conftest import env_for
from tests.fakes.arxiv import SEED_ID, FakeArxiv
from tests.fakes.gemini import FakeGemini
from tests.fakes.telegram import BOT_USERNAME, QUERY_TOO_OLD, TOKEN, Call, FakeTelegram, parse_html
from tests.test_telegram import ALICE, BOB, Bot, buttons, running

CAROL = FakeTelegram.user(1003, "Carol")  # not a member of the group
GROUP = -100_777


@pytest.fixture
def tg() -> Any:
    with FakeTelegram() as fake:
        yield fake


@contextlib.asynccontextmanager
async def telegram_bot(tg: FakeTelegram, env: dict[str, str]) -> AsyncIterator[Bot]:
    c = await build_components(load_settings(**env, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE_URL=tg.url))
    try:
        async with running(c) as app:
            yield Bot(tg, c, app)
    finally:
        await c.aclose()


@pytest.fixture
async def bot(tmp_path: Path, fake_arxiv: FakeArxiv, tg: FakeTelegram) -> AsyncIterator[Bot]:
    async with telegram_bot(tg, env_for(tmp_path, fake_arxiv)) as b:
        yield b


def texts(tg: FakeTelegram, chat_id: int) -> list[str]:
    """What the chat shows: sent messages and edits, as plain text."""
    return [parse_html(c.params["text"]) for c in tg.calls
            if c.chat_id == chat_id and c.method in ("sendMessage", "editMessageText") and c.error is None]


def refused(tg: FakeTelegram) -> list[Call]:
    return [c for c in tg.calls if c.error is not None and c.method != "getUpdates"]


# --- hostile input over every command ------------------------------------------------------------------

HOSTILE = {
    "10k": "A" * 10_000,
    "nested": "(" * 1000 + "cat:cs.CV" + ")" * 1000,
    "html": '<b>bold</b> & <a href="x">link</a> <script>alert(1)</script>',
    "sql": "x'); DROP TABLE topics; --",
    "rtl-emoji": "\u202e\u200fمرحبا بالعالم 🚀🔥 \u202c",
    "zero-width": "\u200b\u200d\u2060\ufeff",
    "superscript": "²",
    "arabic-digits": "٣",
    "fullwidth": "５",
    "path": "../../etc/passwd",
    "huge": "9" * 40,
    "empty": "",
}
COMMANDS = ["start", "help", "subscribe", "unsubscribe", "topics", "summary", "settings", "digest",
            "settings max", "settings time", "settings timezone", "settings language", "settings nope",
            "ask", "ask 2405.01872"]
# Where the clear reply must say this (the rest must only be clear: no internal error).
EXPECTED = {
    ("settings max", "superscript"): "digits 0-9",
    ("settings max", "arabic-digits"): "digits 0-9",
    ("unsubscribe", "superscript"): "digits 0-9",
    ("unsubscribe", "arabic-digits"): "digits 0-9",
    ("unsubscribe", "huge"): "There is no topic #999999999999…",
    ("subscribe", "10k"): "at most 500 characters",
    ("subscribe", "html"): "cannot contain",
    ("subscribe", "sql"): "cannot contain",
    ("subscribe", "empty"): "Give a query",
    ("subscribe", "zero-width"): "Give a query",
    ("summary", "10k"): "far too long",
    ("summary", "path"): "not an arXiv id",
    ("summary", "arabic-digits"): "digits 0-9",
    ("summary", "empty"): "Give a paper id",
    ("settings time", "arabic-digits"): "digits 0-9",
    ("settings timezone", "path"): "not an IANA time zone",
    ("settings language", "10k"): "settings are short",
    ("settings nope", "sql"): "Unknown setting",
    ("ask", "empty"): "Give a paper id and a question",
    ("ask 2405.01872", "10k"): "A question can be at most 1,000 characters",
    ("ask 2405.01872", "zero-width"): "Ask a question about the paper",
    ("ask 2405.01872", "empty"): "Ask a question after the paper id",
}


async def test_hostile_arguments_get_clear_replies_and_store_nothing(bot: Bot) -> None:
    tg, store = bot.tg, bot.c.store
    cases: dict[int, tuple[str, str, str]] = {}
    n = 0
    for where in ("private", "group"):
        for command in COMMANDS:
            for name, arg in HOSTILE.items():
                n += 1
                if where == "private":
                    user = FakeTelegram.user(50_000 + n, "Hostile")
                    chat = tg.private_chat(user)
                else:
                    user = ALICE
                    chat = tg.group(-100_000_000 - n, f"Group {n}")
                    tg.set_member(chat["id"], ALICE["id"], "administrator")  # so the input reaches validation
                mention = f"@{BOT_USERNAME}" if where == "group" and n % 2 else ""
                head, _, rest = command.partition(" ")
                tg.push_message(chat, f"/{head}{mention} {rest} {arg}".rstrip(), user)
                cases[chat["id"]] = (where, command, name)
    await tg.idle(quiet=0.5, timeout=120)

    assert refused(tg) == []  # no 400 from the fake: every reply is valid HTML within the limits
    for chat_id, (where, command, name) in cases.items():
        shown = texts(tg, chat_id)
        assert shown, f"no reply to /{command} {name} in a {where} chat"
        assert not any("went wrong" in t for t in shown), (where, command, name, shown)
        if (command, name) in EXPECTED:
            assert any(EXPECTED[command, name] in t for t in shown), (where, command, name, shown)
        if command.startswith("settings ") and command != "settings nope":
            stored = await store.get_chat(Platform.TELEGRAM, str(chat_id))
            assert stored is not None and stored.max_papers == 10 and stored.push_time == bot.c.settings.push_time
            assert stored.timezone == bot.c.settings.timezone and stored.language == "en"
    # A topic is stored only for what /subscribe accepts (a path or a number is a harmless
    # search), in its cleaned form; refused input stores nothing anywhere.
    for chat_id, (where, command, name) in cases.items():
        stored = await store.get_chat(Platform.TELEGRAM, str(chat_id))
        assert stored is not None and stored.id is not None
        topics = [t.query for t in await store.list_topics(stored.id)]
        try:
            accepted = [Service.parse_topic(HOSTILE[name])] if command == "subscribe" else []
        except UserError:
            accepted = []
        assert topics == accepted, (where, command, name)
    assert {q for _, q, _ in await store.active_topics()} == {"all:../../etc/passwd", "all:" + "9" * 40}


async def test_unknown_commands_and_commands_in_captions(bot: Bot) -> None:
    tg = bot.tg
    chat = tg.private_chat(ALICE)
    tg.push_message(chat, "/frobnicate now", ALICE)
    assert parse_html((await bot.reply(chat, "frobnicate")).params["text"]) == (
        "I don't know /frobnicate. Send /help for the commands and examples."
    )
    # A photo whose caption is a command is that command (CommandHandler alone ignores captions).
    tg.push_photo(chat, "/settings max ²", ALICE)
    assert "digits 0-9" in parse_html((await bot.reply(chat, "digits 0-9")).params["text"])
    tg.push_photo(chat, "/topics", ALICE)
    await bot.reply(chat, "No topics yet")
    tg.push_photo(chat, "/nosuch", ALICE)
    await bot.reply(chat, "know /nosuch")
    tg.push_photo(chat, "just a picture of a cat", ALICE)

    group = tg.group(-100_555, "Lab")
    tg.push_message(group, "/frobnicate", BOB)  # likely another bot's command: not ours to answer
    tg.push_message(group, "/frobnicate@another_bot", BOB)
    tg.push_message(group, "/subscribe@another_bot cat:cs.CV", BOB)
    tg.push_photo(group, "/topics@another_bot", BOB)
    tg.push_message(group, f"/frobnicate@{BOT_USERNAME}", BOB)
    await bot.reply(group, "know /frobnicate")
    await tg.idle()
    assert texts(tg, group["id"]) == ["I don't know /frobnicate. Send /help for the commands and examples."]
    assert len(texts(tg, chat["id"])) == 4 and refused(tg) == []


# --- the breakdown button ----------------------------------------------------------------------------


async def post_card(bot: Bot, chat: dict[str, Any], summary: Summary) -> Call:
    """A paper's post in `chat`, as the push sends it; returns the card's sendMessage."""
    stored = await bot.c.store.ensure_chat(Chat(Platform.TELEGRAM, str(chat["id"]), ChatKind(chat["type"])))
    before = len(bot.tg.calls_to("sendMessage", chat["id"]))
    await TelegramSender(bot.app.bot, bot.c.buttons).send_paper(stored, summary, [])
    return bot.tg.calls_to("sendMessage", chat["id"])[before]


def breakdowns(tg: FakeTelegram, chat_id: int) -> list[Call]:
    return [c for c in tg.calls_to("sendMessage", chat_id) if c.params["text"].startswith("<b>Full breakdown</b>")]


async def answered(tg: FakeTelegram, query_id: str) -> Call:
    return await tg.wait_for(
        "answerCallbackQuery", lambda c: c.params.get("callback_query_id") == query_id
    )


async def test_group_breakdown_is_posted_once_whoever_presses_and_however_often(bot: Bot) -> None:
    tg = bot.tg
    group = tg.group(GROUP, "Reading group")
    tg.set_member(GROUP, CAROL["id"], "left")
    summary = (await Service(bot.c).summarize(SEED_ID, "en", with_images=False)).summary
    card = await post_card(bot, group, summary)
    message, data = tg.message(GROUP, card.result["message_id"]), buttons(card)[0]["callback_data"]

    # Concurrent presses by a member, a non-member and the same member again: one breakdown.
    first = [tg.push_callback(message, user, data) for user in (ALICE, CAROL, BOB, ALICE)]
    await tg.wait_for("sendMessage", lambda c: c.chat_id == GROUP and "Full breakdown" in c.params["text"])
    await tg.idle()
    later = [tg.push_callback(message, user, data) for user in (CAROL, ALICE, BOB)]
    await tg.idle()

    posted = breakdowns(tg, GROUP)
    assert len(posted) == 1
    assert posted[0].params["reply_parameters"]["message_id"] == card.result["message_id"]  # it answers the post
    answers = [(await answered(tg, q)).params.get("text") for q in first + later]
    assert answers.count(None) == 1  # the press that posted: a plain answer, the breakdown is the reply
    assert all(a in (ALREADY_POSTED, BEING_POSTED) for a in answers if a is not None)
    assert answers[len(first):] == [ALREADY_POSTED] * len(later)
    stored = await bot.c.store.button_post(Platform.TELEGRAM, str(GROUP), str(card.result["message_id"]), "breakdown")
    assert stored is not None and stored["posted_id"] == str(posted[0].result["message_id"])

    # Another post of the same paper has its own button.
    card2 = await post_card(bot, group, summary)
    tg.push_callback(tg.message(GROUP, card2.result["message_id"]), BOB, buttons(card2)[0]["callback_data"])
    await tg.idle()
    assert len(breakdowns(tg, GROUP)) == 2

    # In a private chat every press may have it (only the presser sees it).
    private = tg.private_chat(ALICE)
    pcard = await post_card(bot, private, summary)
    for _ in range(2):
        tg.push_callback(tg.message(ALICE["id"], pcard.result["message_id"]), ALICE, buttons(pcard)[0]["callback_data"])
        await tg.idle()
    assert len(breakdowns(tg, ALICE["id"])) == 2
    assert refused(tg) == []


async def test_forged_and_stale_button_data_is_answered_and_costs_nothing(bot: Bot) -> None:
    tg = bot.tg
    group = tg.group(GROUP, "Reading group")
    summary = (await Service(bot.c).summarize(SEED_ID, "en", with_images=False)).summary
    card = await post_card(bot, group, summary)
    message, good = tg.message(GROUP, card.result["message_id"]), buttons(card)[0]["callback_data"]
    forged = [
        good.replace("|en|", "|de|"),  # another language would be a new LLM call
        good.replace("2405.01872", "2405.01873"),  # another paper
        "bd|1707.08567|1|en",  # an unsigned button of an earlier version
        "bd1|1707.08567|1|en|AAAAAAAAAAAAAAAA",
        "hello",
    ]
    api_before = len(bot.tg.calls)
    queries = [tg.push_callback(message, CAROL, data) for data in forged]
    await tg.idle()
    for q in queries:
        assert (await answered(tg, q)).params["text"] == STALE_BUTTON
    assert breakdowns(tg, GROUP) == [] and tg.calls_to("sendMessage", GROUP)[1:] == []
    assert [c.method for c in tg.calls[api_before:] if c.method != "getUpdates"] == ["answerCallbackQuery"] * 5
    assert await bot.c.store.quota_used(f"telegram:{CAROL['id']}") == 0
    assert await bot.c.store.get_paper("1707.08567") is None  # not even looked up
    assert await bot.c.store.button_post(Platform.TELEGRAM, str(GROUP), str(card.result["message_id"]), "breakdown") is None


async def test_a_press_after_a_restart_and_a_press_whose_answer_fails(
    tmp_path: Path, fake_arxiv: FakeArxiv, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    env = env_for(tmp_path, fake_arxiv)
    group = tg.group(GROUP, "Reading group")
    async with telegram_bot(tg, env) as bot:
        summary = (await Service(bot.c).summarize(SEED_ID, "en", with_images=False)).summary
        card = await post_card(bot, group, summary)
    message, data = tg.message(GROUP, card.result["message_id"]), buttons(card)[0]["callback_data"]

    # Pressed while the bot was down; handled by a new process on the same database, so late
    # that Telegram no longer takes an answer: the breakdown is posted all the same.
    tg.fail("answerCallbackQuery", None, 400, QUERY_TOO_OLD, times=None)
    query = tg.push_callback(message, BOB, data)
    caplog.set_level(logging.WARNING, logger="bot.telegram_bot")
    async with telegram_bot(tg, env) as bot:
        await tg.wait_for("sendMessage", lambda c: c.chat_id == GROUP and "Full breakdown" in c.params["text"])
        await tg.idle()
        assert [c.error for c in tg.answers(query)] == [QUERY_TOO_OLD]
        assert any("could not answer a button press" in r.getMessage() for r in caplog.records)
        assert not any(FAILED in t for t in texts(tg, GROUP)) and len(breakdowns(tg, GROUP)) == 1
        tg.clear_failures()
    # And after one more restart the post still knows it has its breakdown.
    async with telegram_bot(tg, env) as bot:
        again = tg.push_callback(message, ALICE, data)
        assert (await answered(tg, again)).params["text"] == ALREADY_POSTED
        await tg.idle()
        assert len(breakdowns(tg, GROUP)) == 1
    assert TOKEN not in caplog.text


# --- quota for every on-demand LLM call (FakeGemini counts the calls) ------------------------------------


@pytest.fixture
async def gbot(tmp_path: Path, fake_arxiv: FakeArxiv, fake_gemini: FakeGemini, tg: FakeTelegram) -> AsyncIterator[Bot]:
    env = env_for(tmp_path, fake_arxiv, fake_gemini) | {"PAPERBOT_SUMMARY_QUOTA": "1"}
    async with telegram_bot(tg, env) as b:
        yield b


async def leave_matches(c: Components, chat: Chat, ids: list[str], fake_arxiv: FakeArxiv) -> None:
    """What a poll leaves: papers stored, matched by the chat's topic on the latest announcement."""
    service = Service(c)
    for aid in ids:
        if aid != SEED_ID:
            fake_arxiv.add_paper(aid, title=f"Paper {aid}", published=datetime(2024, 5, 1, tzinfo=UTC))
        await service.find_paper(aid)
    topic, _ = await c.store.add_topic(chat.id, "cat:cs.CV")  # type: ignore[arg-type]
    [topic_id] = [t for t, q, _ in await c.store.active_topics() if q == "cat:cs.CV"]
    await c.store.add_matches([(topic_id, aid, date(2024, 5, 6)) for aid in ids])
    await c.store.set_meta("last_announcement", "2024-05-06")


async def test_digest_draws_on_the_quota_across_language_changes(
    gbot: Bot, fake_gemini: FakeGemini, fake_arxiv: FakeArxiv
) -> None:
    tg, chat = gbot.tg, gbot.tg.private_chat(ALICE)
    stored = await gbot.c.store.ensure_chat(Chat(Platform.TELEGRAM, str(ALICE["id"]), ChatKind.PRIVATE))
    await leave_matches(gbot.c, stored, [SEED_ID, "2405.02001", "2405.02002"], fake_arxiv)

    for round_, language in enumerate(["de", "fr", "ja"], 1):
        mark = max([c.result["message_id"] for c in tg.calls_to("sendMessage", chat["id"])], default=0)
        tg.push_message(chat, f"/settings language {language}", ALICE)
        await tg.wait_for("sendMessage", lambda c: c.chat_id == chat["id"] and c.result["message_id"] > mark)
        tg.push_message(chat, "/digest", ALICE)
        await tg.wait_for("sendMessage", lambda c: c.chat_id == chat["id"] and "need a new summary" in c.params["text"]
                          and c.result["message_id"] > mark)
        await tg.idle()
        [note] = [c for c in tg.calls_to("sendMessage", chat["id"])
                  if "need a new summary" in c.params["text"] and c.result["message_id"] > mark]
        shown = parse_html(note.params["text"])
        if round_ == 1:
            assert shown.startswith("2 more papers need a new summary, and you have used your 1 new summaries")
        else:
            assert shown.startswith("3 more papers need a new summary")
        assert "Ask again with /digest in about 60 min" in shown or "in about 59 min" in shown
    # The repro of the issue made 18 calls; the quota allows one.
    assert fake_gemini.calls == 1
    cards = [c for c in tg.calls_to("sendMessage", ALICE["id"]) if "reply_markup" in c.params]
    assert len(cards) == 1 and "[German]" in parse_html(cards[0].params["text"])
    assert await gbot.c.store.quota_used(f"telegram:{ALICE['id']}") == 1

    # What is stored stays free: the German digest again sends the paper it has.
    await gbot.c.store.update_chat_settings(stored.id, language="de")  # type: ignore[arg-type]
    tg.push_message(chat, "/digest", ALICE)
    await tg.idle()
    assert fake_gemini.calls == 1
    assert len([c for c in tg.calls_to("sendMessage", ALICE["id"]) if "reply_markup" in c.params]) == 2
    assert refused(tg) == []


async def test_a_shared_chats_digest_is_posted_once_per_announcement(
    gbot: Bot, fake_gemini: FakeGemini, fake_arxiv: FakeArxiv
) -> None:
    """Cached papers cost no quota, so without this anyone could post the same digest again and
    again into a group. A private chat may have it as often as it likes."""
    tg = gbot.tg
    group = tg.group(GROUP, "Reading group")
    stored = await gbot.c.store.ensure_chat(Chat(Platform.TELEGRAM, str(GROUP), ChatKind.SUPERGROUP))
    await leave_matches(gbot.c, stored, [SEED_ID, "2405.02001"], fake_arxiv)

    def headers() -> list[Call]:
        return [c for c in tg.calls_to("sendMessage", GROUP) if parse_html(c.params["text"]).startswith("Today's papers")]

    # Alice's quota covers one paper: her digest is partial, so it does not count as posted.
    tg.push_message(group, "/digest", ALICE)
    await tg.wait_for("sendMessage", lambda c: c.chat_id == GROUP and "a new summary" in c.params["text"])
    await tg.idle()
    # Bob's has the rest (one paper stored, one from his quota): the whole digest, posted.
    tg.push_message(group, "/digest", BOB)
    await tg.idle()
    assert len(headers()) == 2 and fake_gemini.calls == 2
    for who in (ALICE, BOB, ALICE):
        tg.push_message(group, "/digest", who)
        await tg.idle()
    assert len(headers()) == 2 and fake_gemini.calls == 2
    repeats = [parse_html(c.params["text"]) for c in tg.calls_to("sendMessage", GROUP)
               if "posted in this chat already" in c.params["text"]]
    assert len(repeats) == 3 and repeats[0].startswith("The digest of 2024-05-06 was posted in this chat already")
    # Another language is another digest.
    await gbot.c.store.update_chat_settings(stored.id, language="de")  # type: ignore[arg-type]
    tg.push_message(group, "/digest", CAROL)
    await tg.idle()
    assert len(headers()) == 3
    assert refused(tg) == []


def old_content() -> SummaryContent:
    return SummaryContent("", "One line.", ["A takeaway."], [], "Background.", "", [], "", "")


async def test_breakdown_needing_a_new_summary_is_charged_to_the_presser(gbot: Bot, fake_gemini: FakeGemini) -> None:
    tg = gbot.tg
    group = tg.group(GROUP, "Reading group")
    paper = await Service(gbot.c).find_paper(SEED_ID)
    # A post whose summary is no longer stored (say, made by an earlier prompt version).
    card = await post_card(gbot, group, Summary(paper, old_content(), "de", "gemini:old"))
    message, data = tg.message(GROUP, card.result["message_id"]), buttons(card)[0]["callback_data"]

    await gbot.c.store.quota_add(f"telegram:{BOB['id']}")  # Bob has used his one call this hour
    refused_press = tg.push_callback(message, BOB, data)
    answer = (await answered(tg, refused_press)).params
    assert answer["text"].startswith("You have used your 1 new summaries for this hour.")
    assert answer["show_alert"] in (True, "true")
    await tg.idle()
    assert fake_gemini.calls == 0 and breakdowns(tg, GROUP) == []

    tg.push_callback(message, ALICE, data)  # Alice has hers: the claim Bob's press gave up is hers
    await tg.wait_for("sendMessage", lambda c: c.chat_id == GROUP and "Full breakdown" in c.params["text"])
    await tg.idle()
    assert fake_gemini.calls == 1 and "[German]" in parse_html(breakdowns(tg, GROUP)[0].params["text"])
    assert await gbot.c.store.quota_used(f"telegram:{ALICE['id']}") == 1
    tg.push_callback(message, CAROL, data)
    await tg.idle()
    assert fake_gemini.calls == 1 and len(breakdowns(tg, GROUP)) == 1


# --- bounded posts ----------------------------------------------------------------------------------


async def test_a_2900_author_paper_makes_a_short_breakdown(bot: Bot, fake_arxiv: FakeArxiv) -> None:
    tg = bot.tg
    authors = [f"Author Number{i} Surname{i}" for i in range(2900)]
    fake_arxiv.add_paper("2405.09999", title="A big collaboration", authors=authors,
                         published=datetime(2024, 5, 1, tzinfo=UTC))
    chat = tg.private_chat(ALICE)
    tg.push_message(chat, "/summary 2405.09999", ALICE)
    card = await bot.answer(chat, "2405.09999")
    assert "et al." in parse_html(card.params["text"])
    before = len(tg.calls_to("sendMessage", ALICE["id"]))
    tg.push_callback(tg.message(ALICE["id"], card.params["message_id"]), ALICE, buttons(card)[0]["callback_data"])
    await tg.wait_for("sendMessage", lambda c: c.chat_id == ALICE["id"] and "Full breakdown" in c.params["text"])
    await tg.idle()
    pieces = [parse_html(c.params["text"]) for c in tg.calls_to("sendMessage", ALICE["id"])[before:]]
    assert 1 <= len(pieces) <= 3
    joined = "\n".join(pieces)
    authors = next(line for line in joined.splitlines() if line.startswith("2. Authors"))
    assert authors.endswith("Author Number9 Surname9 … and 2,890 more") and "Number10 " not in authors
    assert "https://arxiv.org/abs/2405.09999v1" in joined  # the full list, one click away
    assert refused(tg) == []


async def test_concurrent_presses_on_a_slow_new_summary_post_once(gbot: Bot, fake_gemini: FakeGemini) -> None:
    tg = gbot.tg
    group = tg.group(GROUP, "Reading group")
    paper = await Service(gbot.c).find_paper(SEED_ID)
    card = await post_card(gbot, group, Summary(paper, old_content(), "fr", "gemini:old"))
    message, data = tg.message(GROUP, card.result["message_id"]), buttons(card)[0]["callback_data"]
    fake_gemini.script(FakeGemini.valid(delay=1.0))
    queries = [tg.push_callback(message, user, data) for user in (ALICE, BOB, CAROL)]
    await tg.wait_for("sendMessage", lambda c: c.chat_id == GROUP and "Full breakdown" in c.params["text"])
    await tg.idle()
    assert len(breakdowns(tg, GROUP)) == 1 and fake_gemini.calls == 1
    texts_ = [(await answered(tg, q)).params.get("text") for q in queries]
    assert sorted(map(str, texts_)) == sorted([BEING_POSTED, BEING_POSTED, "None"])
