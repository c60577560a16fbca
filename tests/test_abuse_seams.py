"""Seams between the buttons, /ask, replies, migrations and the quota (issues 9-13 merged), end to
end through FakeTelegram and the real Application."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from bot.app import Components
from bot.models import Chat, ChatKind, Platform, Summary
from bot.render.discord import answer_chunks
from bot.render.telegram import breakdown_messages
from bot.service import Service
from bot.store import Store
from bot.store import buttons as button_store
from bot.validate import MAX_QUESTION_CHARS
from tests.fakes.arxiv import SEED_ID, SEED_TITLE
from tests.fakes.discord import MEMBER, FakeDiscord
from tests.fakes.gemini import FakeGemini
from tests.fakes.telegram import BOT_USERNAME, parse_html
from tests.test_abuse_telegram import (  # noqa: F401 - fixtures
    ALICE,
    ALREADY_POSTED,
    BEING_POSTED,
    BOB,
    GROUP,
    HOSTILE,
    answered,
    bot,
    breakdowns,
    old_content,
    post_card,
    tg,
)
from tests.test_abuse_telegram import gbot as abuse_gbot  # noqa: F401 - quota 1, Gemini
from tests.test_ask import QUESTION, ask, discord_fake, gbot, reply_to  # noqa: F401 - fixtures
from tests.test_discord import answer as discord_answer
from tests.test_discord import running_bot
from tests.test_render import sentences
from tests.test_telegram import Bot, buttons, wait_until


async def test_a_press_on_a_post_of_a_migrated_group_posts_in_the_supergroup_and_keeps_its_settings(
    bot: Bot,
) -> None:
    tg, store = bot.tg, bot.c.store
    old = tg.group(-600, "Reading group", kind="group")
    tg.set_member(old["id"], ALICE["id"], "creator")
    tg.push_message(old, "/settings language de", ALICE)
    await bot.reply(old, "Settings changed")
    tg.push_message(old, "/subscribe cat:cs.CV", ALICE)
    await bot.reply(old, "Subscribed")
    summary = (await Service(bot.c).summarize(SEED_ID, "en", with_images=False)).summary
    card = await post_card(bot, old, summary)
    tg.push_migration(old, -100600601, ALICE)

    async def moved() -> bool:
        return await store.get_chat(Platform.TELEGRAM, "-100600601") is not None

    await wait_until(moved)
    # The old group's history stays visible; its buttons still work, but it takes no messages.
    tg.migrated(-600, -100600601)
    tg.push_callback(tg.message(-600, card.result["message_id"]), BOB, buttons(card)[0]["callback_data"])
    await tg.wait_for("sendMessage", lambda c: c.chat_id == -100600601 and "Full breakdown" in c.params["text"])
    await tg.idle()

    [posted] = breakdowns(tg, -100600601)
    assert "reply_parameters" not in posted.params  # the post's id means another message there
    assert "Defect Image Sample Generation" in parse_html(posted.params["text"])
    new = await store.get_chat(Platform.TELEGRAM, "-100600601")
    assert new is not None and new.language == "de"  # the press did not reset the settings
    assert [t.query for t in await store.list_topics(new.id)] == ["cat:cs.CV"]  # type: ignore[arg-type]
    assert await store.get_chat(Platform.TELEGRAM, "-600") is None


# --- bounded answers ------------------------------------------------------------------------------------


async def test_a_huge_llm_answer_is_a_few_messages_on_both_platforms(gbot: Bot, fake_gemini: FakeGemini) -> None:
    # A question can ask the model to ramble ("repeat this 10,000 times"): what is shown stays short.
    fake_gemini.script(FakeGemini.content({"answer": "They use tables. " * 2500, "quotes": ["x " * 3000] * 3}))
    chat = gbot.tg.private_chat(ALICE)
    qid = ask(gbot, chat, f"/ask {SEED_ID} {QUESTION}", ALICE)
    await reply_to(gbot, qid, chat)
    await gbot.tg.idle()
    replies = [c for c in gbot.tg.calls_to("sendMessage", chat["id"])
               if (c.params.get("reply_parameters") or {}).get("message_id") == qid]
    assert 1 <= len(replies) <= 2
    shown = "\n".join(parse_html(r.params["text"]) for r in replies)
    assert "They use tables. They use tables." in shown and "…" in shown
    answer = await Service(gbot.c).ask(SEED_ID, QUESTION, "en")  # the cached answer, as Discord shows it
    assert answer.cached and len(answer.text) > 40_000
    assert len(answer_chunks(answer)) <= 4


async def test_an_overlong_question_is_refused_with_an_example_before_any_cost(
    gbot: Bot, fake_gemini: FakeGemini
) -> None:
    chat = gbot.tg.private_chat(ALICE)
    qid = ask(gbot, chat, f"/ask {SEED_ID} " + "Why? " * 2000, ALICE)
    [reply] = await reply_to(gbot, qid, chat)
    text = parse_html(reply.params["text"])
    assert text.startswith(f"A question can be at most {MAX_QUESTION_CHARS:,} characters; this one has 9,999.")
    assert "e.g. /ask 2405.01872" in text
    assert fake_gemini.calls == 0 and await gbot.c.store.quota_used(f"telegram:{ALICE['id']}") == 0


# --- /ask as a reply -------------------------------------------------------------------------------------


async def test_ask_without_an_id_as_a_reply_to_a_post_asks_about_that_paper(gbot: Bot, fake_gemini: FakeGemini) -> None:
    tg = gbot.tg
    group = tg.group(-100_778, "Lab")
    tg.push_message(group, f"/summary {SEED_ID}", BOB)
    card = await gbot.answer(group, SEED_ID)
    await tg.idle()
    post = tg.message(group["id"], card.params["message_id"])
    qid = ask(gbot, group, f"/ask@{BOT_USERNAME} which datasets do they use?", BOB, reply_to_message=post)
    [reply] = await reply_to(gbot, qid, group)
    assert parse_html(reply.params["text"]).startswith(f"Answer: {SEED_TITLE}")
    # An id still names the paper, whatever the reply is to; nothing else is a question yet.
    qid = ask(gbot, group, "/ask 2405.99999 what is it?", BOB, reply_to_message=post)
    [reply] = await reply_to(gbot, qid, group)
    assert "arxiv.org" in parse_html(reply.params["text"])
    qid = ask(gbot, group, "/ask", BOB, reply_to_message=post)
    [reply] = await reply_to(gbot, qid, group)
    assert parse_html(reply.params["text"]).startswith("Ask a question about the paper, e.g. /ask 2405.01872")
    other = tg.new_message(group, "lunch?", ALICE)
    tg.push({"message": other})
    qid = ask(gbot, group, "/ask which datasets?", BOB, reply_to_message=other)
    [reply] = await reply_to(gbot, qid, group)
    assert "'which' is not an arXiv id" in parse_html(reply.params["text"])
    assert fake_gemini.calls == 2  # the summary and the one question


# --- a breakdown that fails halfway -----------------------------------------------------------------------


async def test_a_breakdown_cut_off_halfway_is_not_posted_again_from_the_start(bot: Bot) -> None:
    tg = bot.tg
    stored = (await Service(bot.c).summarize(SEED_ID, "en", with_images=False)).summary
    # The stored summary, made long (as an LLM's can be): its breakdown takes several messages.
    summary = dataclasses.replace(stored, content=dataclasses.replace(
        stored.content, background=sentences(30, "Background"), results=sentences(30, "Results"),
        conclusion=sentences(30, "Conclusion"),
    ))
    await bot.c.store.put_summary(summary, bot.c.summaries.primary.model_key)
    assert len(breakdown_messages(summary)) >= 2
    group = tg.group(GROUP, "Reading group")
    card = await post_card(bot, group, summary)
    message, data = tg.message(GROUP, card.result["message_id"]), buttons(card)[0]["callback_data"]

    # The first message is out, the second is refused (it would be the same after a crash between them).
    tg.fail("sendMessage", GROUP, 400, "Bad Request: message is too long", after=1)
    tg.push_callback(message, ALICE, data)
    await tg.wait_for("sendMessage", lambda c: c.chat_id == GROUP and "Full breakdown" in c.params["text"])
    await tg.idle()
    first = breakdowns(tg, GROUP)
    assert len(first) == 1

    again = tg.push_callback(message, BOB, data)
    assert (await answered(tg, again)).params["text"] == ALREADY_POSTED
    await tg.idle()
    assert len(breakdowns(tg, GROUP)) == 1  # the chat has the start of it, not two starts
    stored = await bot.c.store.button_post(Platform.TELEGRAM, str(GROUP), str(card.result["message_id"]), "breakdown")
    assert stored is not None and stored["posted_id"] == str(first[0].result["message_id"])


async def test_two_rows_for_one_migrated_chat_keep_the_older_ones_settings_on_both_backends(db_target: str) -> None:
    store = await Store.open(db_target)
    try:
        # The supergroup wrote before its migration message was handled: the old group's settings win.
        await store.ensure_chat(Chat(Platform.TELEGRAM, "-1", ChatKind.GROUP, "g", "de", "UTC", "08:00"))
        await store.ensure_chat(Chat(Platform.TELEGRAM, "-1001", ChatKind.SUPERGROUP, "g", "en", "UTC", "09:00"))
        await store.migrate_chat(Platform.TELEGRAM, "-1", "-1001")
        moved = await store.get_chat(Platform.TELEGRAM, "-1001")
        assert moved is not None and (moved.language, moved.push_time) == ("de", "08:00")
        # A press on an old post registered the old id afresh after the move: the supergroup's stay.
        await store.ensure_chat(Chat(Platform.TELEGRAM, "-1", ChatKind.GROUP, "g", "en", "UTC", "09:00"))
        await store.migrate_chat(Platform.TELEGRAM, "-1", "-1001")
        again = await store.get_chat(Platform.TELEGRAM, "-1001")
        assert again is not None and (again.language, again.push_time, again.id) == ("de", "08:00", moved.id)
        assert again.kind == ChatKind.SUPERGROUP and await store.get_chat(Platform.TELEGRAM, "-1") is None
    finally:
        await store.close()


# --- a slow breakdown keeps its claim -----------------------------------------------------------------------


async def test_a_press_while_a_slow_new_summary_outlasts_the_claim_timeout_does_not_post_twice(
    abuse_gbot: Bot, fake_gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A claim goes stale after CLAIM_TIMEOUT (10 min) only when its holder stopped refreshing it; a
    # summary waiting behind a poll's queue and the LLM's retries can take longer than that.
    monkeypatch.setattr(button_store, "CLAIM_TIMEOUT", timedelta(seconds=2))
    tg = abuse_gbot.tg
    group = tg.group(GROUP, "Reading group")
    paper = await Service(abuse_gbot.c).find_paper(SEED_ID)
    card = await post_card(abuse_gbot, group, Summary(paper, old_content(), "fr", "gemini:old"))
    message, data = tg.message(GROUP, card.result["message_id"]), buttons(card)[0]["callback_data"]
    fake_gemini.script(FakeGemini.valid(delay=5.0))
    tg.push_callback(message, ALICE, data)
    await asyncio.sleep(3.5)  # past the (shortened) timeout, the first press still summarizing
    late = tg.push_callback(message, BOB, data)
    assert (await answered(tg, late)).params["text"] == BEING_POSTED
    await tg.wait_for("sendMessage", lambda c: c.chat_id == GROUP and "Full breakdown" in c.params["text"], 30)
    await tg.idle()
    assert len(breakdowns(tg, GROUP)) == 1 and fake_gemini.calls == 1


async def test_discord_ask_with_an_unusable_id_shows_an_ask_example(discord_fake: FakeDiscord, components: Components) -> None:
    async with running_bot(components, discord_fake):
        for bad in ("\u200b", "../../etc/passwd", "２４０５.０１８７２"):
            [reply] = await discord_answer(discord_fake, discord_fake.slash("ask", {"id": bad, "question": QUESTION}))
            assert reply.flags & 64 and "/ask 2405.01872 Which datasets do they evaluate on?" in reply.content, bad
            assert "/summary" not in reply.content


async def test_discord_ask_with_hostile_options_gets_clear_replies(discord_fake: FakeDiscord, components: Components) -> None:
    tokens: dict[str, tuple[str, str]] = {}
    channel = 1_500_000_000_000_000_000
    async with running_bot(components, discord_fake):
        for option, other in (("question", {"id": SEED_ID}), ("id", {"question": QUESTION})):
            for name, value in HOSTILE.items():
                channel += 1
                token = discord_fake.slash("ask", {**other, option: value}, permissions=MEMBER, channel_id=channel)
                tokens[token] = (option, name)
        for token, case in tokens.items():
            replies = await discord_answer(discord_fake, token)
            text = "\n".join(m.content for m in replies)
            assert replies and "went wrong" not in text.lower(), case
            if not text.startswith("**Answer**"):  # a refusal reaches only the asker
                assert replies[0].flags & 64, (case, text)
    assert discord_fake.refusals == []
