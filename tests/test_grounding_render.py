"""A faithful and a hallucinating Gemini (the fake, over HTTP) summarize the seed paper, whose PDF is a
real arXiv PDF: the hallucinated quote and number are marked in JSON, Markdown, Telegram (through the
fake Bot API) and Discord (through the fake Discord); the faithful ones are not. Pushed posts say
which topic matched and which of its terms.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from bot.app import Components, build_components
from bot.config import load_settings
from bot.delivery import push_once
from bot.metrics import MeteredSender
from bot.models import Chat, ChatKind, Platform
from bot.query import MatchDoc, matched_terms, parse_query
from bot.render.markdown import render_summary_markdown
from bot.render.telegram import breakdown_html, card_html
from bot.service import Service
from bot.telegram_bot import TelegramSender
from tests.conftest import env_for
from tests.fakes.arxiv import SEED_ABSTRACT, SEED_ID
from tests.fakes.discord import FakeDiscord
from tests.fakes.gemini import FakeGemini, summary_for
from tests.fakes.telegram import TOKEN, FakeTelegram, parse_html
from tests.test_discord import TOKEN as DISCORD_TOKEN
from tests.test_discord import answer as discord_answer
from tests.test_discord import running_bot
from tests.test_telegram import ALICE, Bot, running

MADE_UP_QUOTE = "Our method reaches 97.3% accuracy on the NEU-DET benchmark, beating every GAN baseline."
NOT_FOUND = "⚠ not found in the paper"


def hallucinating(prompt_reply: dict[str, Any]) -> dict[str, Any]:
    """The faithful fake reply, with a takeaway resting on a made-up passage and a made-up number."""
    reply = dict(prompt_reply)
    reply["key_takeaways"] = ["StableSDG reaches 97.3% accuracy on NEU-DET.", *reply["key_takeaways"][1:]]
    reply["evidence"] = [MADE_UP_QUOTE, *reply["evidence"][1:]]
    return reply


@pytest.fixture
async def components_g(tmp_path: Path, fake_arxiv: Any, fake_gemini: FakeGemini) -> AsyncIterator[Components]:
    c = await build_components(load_settings(**env_for(tmp_path, fake_arxiv, fake_gemini)))
    try:
        yield c
    finally:
        await c.aclose()


def script_hallucination(fake_gemini: FakeGemini) -> None:
    # The prompt the bot sends starts with the template; the fake's own faithful reply is the base.
    prompt = f"Target language: English\nTitle: x\n\nAbstract:\n{' '.join(SEED_ABSTRACT.split())}\n"
    fake_gemini.script(FakeGemini.content(hallucinating(summary_for(prompt))))


async def test_faithful_gemini_summary_is_verified_everywhere(components_g: Components) -> None:
    result = await Service(components_g).summarize(SEED_ID, "en")
    js = result.summary.to_json()
    assert [e["verified"] for e in js["evidence"]] == [True] * 4
    assert all(e["quote"] and e["quote"] in " ".join(SEED_ABSTRACT.split()) for e in js["evidence"])
    assert js["unsupported_numbers"] == []
    assert NOT_FOUND not in render_summary_markdown(result.summary)
    assert NOT_FOUND not in parse_html(card_html(result.summary))
    sources = parse_html(breakdown_html(result.summary))
    assert "9. Sources" in sources and "(abstract)" in sources


async def test_hallucination_is_marked_in_json_and_markdown(
    components_g: Components, fake_gemini: FakeGemini
) -> None:
    script_hallucination(fake_gemini)
    summary = (await Service(components_g).summarize(SEED_ID, "en")).summary
    js = summary.to_json()
    assert js["evidence"][0] == {"quote": MADE_UP_QUOTE, "verified": False, "page": None}
    assert [e["verified"] for e in js["evidence"][1:]] == [True] * 3
    assert js["unsupported_numbers"] == ["97.3%"]
    # Stored with the summary: the cached copy says the same.
    cached = await components_g.summaries.cached(summary.paper, "en")
    assert cached is not None and cached.to_json()["evidence"] == js["evidence"]

    md = render_summary_markdown(summary)
    assert f"- StableSDG reaches 97.3%⚠ accuracy on NEU-DET. {NOT_FOUND}" in md
    assert "> **⚠ Numbers not found in the paper: 97.3%**" in md
    assert f"(1) {NOT_FOUND}: “{MADE_UP_QUOTE}”" in md  # the Sources section


async def test_hallucination_is_marked_on_telegram(
    tmp_path: Path, fake_arxiv: Any, fake_gemini: FakeGemini
) -> None:
    env: dict[str, Any] = env_for(tmp_path, fake_arxiv, fake_gemini)
    env.update(TELEGRAM_BOT_TOKEN=TOKEN)
    with FakeTelegram() as tg:
        env.update(TELEGRAM_API_BASE_URL=tg.url)
        c = await build_components(load_settings(**env))
        try:
            async with running(c) as app:
                bot = Bot(tg, c, app)
                script_hallucination(fake_gemini)
                chat = tg.private_chat(ALICE)
                tg.push_message(chat, f"/summary {SEED_ID}", ALICE)
                card = parse_html((await bot.answer(chat, SEED_ID)).params["text"])
                assert f"• StableSDG reaches 97.3%⚠ accuracy on NEU-DET. {NOT_FOUND}" in card
                assert "⚠ Numbers not found in the paper: 97.3%" in card
                assert card.count(NOT_FOUND) == 1
                # The chat in Chinese gets the notices in Chinese.
                await Service(c).change_setting(await c.store.get_chat(Platform.TELEGRAM, str(ALICE["id"])),
                                                ["language", "zh"])
                script_hallucination(fake_gemini)
                tg.push_message(chat, f"/summary {SEED_ID}v1", ALICE)
                zh = parse_html((await bot.answer(chat, f"{SEED_ID}v1")).params["text"])
                assert "⚠ 未在论文中找到" in zh and "⚠ 以下数字未在论文中找到：97.3%" in zh
        finally:
            await c.aclose()


async def test_hallucination_is_marked_on_discord(
    tmp_path: Path, fake_arxiv: Any, fake_gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = await build_components(load_settings(**env_for(tmp_path, fake_arxiv, fake_gemini)))
    try:
        with FakeDiscord(DISCORD_TOKEN) as fake:
            fake.install(monkeypatch)
            async with running_bot(c, fake):
                script_hallucination(fake_gemini)
                token = fake.slash("summary", {"id": SEED_ID})
                [msg] = await discord_answer(fake, token)
                description = msg.embeds[0]["description"]
                assert "97.3%⚠ accuracy on NEU-DET. ⚠ not found in the paper" in description
                assert "**⚠ Numbers not found in the paper: 97.3%**" in description
    finally:
        await c.aclose()


# --- why it matched --------------------------------------------------------------------------------


def test_matched_terms_names_what_holds_and_nothing_excluded() -> None:
    doc = MatchDoc("Diffusion priors for defect images", "We generate steel defect images.", ("Yichun Tai",),
                   ("cs.CV", "cs.LG"))
    q = parse_query("cat:cs.CV AND (ti:diffusion OR ti:gan) ANDNOT ti:survey")
    assert matched_terms(q, doc) == ["cat:cs.CV", "ti:diffusion"]
    assert matched_terms(parse_query('au:"yichun tai" OR steel'), doc) == ['au:"yichun tai"', "all:steel"]
    assert matched_terms(parse_query("ti:gan"), doc) == []


async def test_pushed_post_names_the_topic_and_the_terms_that_matched(components: Components) -> None:
    c = components
    with FakeTelegram() as tg:
        from telegram.ext import ExtBot

        async with ExtBot(TOKEN, base_url=f"{tg.url}/bot", base_file_url=f"{tg.url}/file/bot") as bot:
            chat = await c.store.ensure_chat(Chat(Platform.TELEGRAM, str(ALICE["id"]), ChatKind.PRIVATE))
            paper = await Service(c).find_paper(SEED_ID)
            topic, _ = await c.store.add_topic(chat.id, "cat:cs.CV AND ti:diffusion")  # type: ignore[arg-type]
            await c.store.add_matches([(topic.id, paper.arxiv_id, date(2024, 5, 6))])
            await c.store.set_meta("last_announcement", "2024-05-06")
            # Wrapped as `paperbot run` wraps it: the metrics' sender passes `why` through.
            sender = MeteredSender(TelegramSender(bot, c.buttons, c.store), c.metrics)
            report = await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
            assert report.papers == 1
            [card] = [call for call in tg.calls_to("sendMessage", ALICE["id"]) if "reply_markup" in call.params]
            html = card.params["text"]
            assert (f"🔎 Matched topic: #{topic.id} <code>cat:cs.CV AND ti:diffusion</code> — "
                    "<b><u>cat:cs.CV</u></b>, <b><u>ti:diffusion</u></b>") in html
            # The pushed post's messages are kept: a reply to it is a question about the paper.
            post = await c.store.post_of_message(Platform.TELEGRAM, str(ALICE["id"]), card.result["message_id"])
            assert post is not None and post.arxiv_id == SEED_ID


async def test_discord_embed_names_the_topic_with_bold_terms(components: Components) -> None:
    from bot.models import MatchReason
    from bot.render.discord import paper_embed

    summary = (await Service(components).summarize(SEED_ID, "en")).summary
    embed = paper_embed(summary, [MatchReason(7, "cat:cs.CV AND ti:`diffusion`", ("cat:cs.CV", "ti:diffusion"))])
    [field] = [f for f in embed["fields"] if f["name"] == "Matched topic"]
    assert field["value"] == "🔎 #7 `cat:cs.CV AND ti:'diffusion'` — **cat:cs.CV**, **ti:diffusion**"


def test_sources_and_marks_are_escaped_and_within_limits() -> None:
    from bot.models import Evidence
    from bot.render.discord import breakdown_chunks
    from bot.render.telegram import breakdown_messages
    from tests.test_render import make_summary

    hostile = "<b>bold</b> & <script>x</script> " + "long passage " * 400
    summary = make_summary(
        key_takeaways=["Uses <priors> & 12.5% more.", "Second.", "Third."],
        evidence=[Evidence(hostile, True, 3), Evidence("<i>made up</i> & more words here", False), Evidence(None, False)],
        unsupported_numbers=["12.5%"],
    )
    card = parse_html(card_html(summary))
    assert "• Uses <priors> & 12.5%⚠ more." in card  # verified quote: no notice; its number is marked
    assert "• Second. ⚠ not found in the paper" in card and "• Third. ⚠ not found in the paper" in card
    pieces = breakdown_messages(summary)
    text = "\n".join(parse_html(p) for p in pieces)  # each piece parses as Telegram HTML
    assert all(len(p) <= 4096 for p in pieces)
    assert 0 < text.count("long passage") < 40 and "long passage…”" in text  # a page-long passage is clipped
    assert "“<b>bold</b> & <script>x</script> long passage" in text and "(p. 3)" in text
    assert "(2) ⚠ not found in the paper: “<i>made up</i> & more words here”" in text
    assert "(3) ⚠ not found in the paper: no passage given" in text
    assert all(len(c) <= 2000 for c in breakdown_chunks(summary))


def _long_matching_queries(n: int) -> list[str]:
    """Queries of many long phrases of the seed paper's abstract (all matching), each starting with an
    alternative full of characters that HTML escaping lengthens fivefold."""
    words = re.sub(r"[^\w\s-]", " ", SEED_ABSTRACT).split()
    phrases = [" ".join(words[i : i + 10]) for i in range(0, 80, 10)]
    return [
        f'(ti:"{"<&> " * 40}{k}" OR cat:cs.CV) AND ' + " AND ".join(f'abs:"{p}"' for p in phrases)
        for k in range(n)
    ]


async def test_a_post_matched_by_long_topics_still_fits_and_names_the_topic(components: Components) -> None:
    """Three matching topics with long queries and long matched terms: the why-it-matched block alone
    outgrew a message, and the post could not be rendered at all (so the paper never arrived)."""
    c = components
    with FakeTelegram() as tg:
        from telegram.ext import ExtBot

        async with ExtBot(TOKEN, base_url=f"{tg.url}/bot", base_file_url=f"{tg.url}/file/bot") as bot:
            chat = await c.store.ensure_chat(Chat(Platform.TELEGRAM, str(ALICE["id"]), ChatKind.PRIVATE))
            paper = await Service(c).find_paper(SEED_ID)
            topics = [(await c.store.add_topic(chat.id, q))[0] for q in _long_matching_queries(3)]  # type: ignore[arg-type]
            await c.store.add_matches([(t.id, paper.arxiv_id, date(2024, 5, 6)) for t in topics])
            await c.store.set_meta("last_announcement", "2024-05-06")
            # Wrapped as `paperbot run` wraps it: the metrics' sender passes `why` through.
            sender = MeteredSender(TelegramSender(bot, c.buttons, c.store), c.metrics)
            report = await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
            assert report.papers == 1
            [card] = [call for call in tg.calls_to("sendMessage", ALICE["id"]) if "reply_markup" in call.params]
            text = parse_html(card.params["text"])  # the fake refuses a text over 4096 or bad HTML
            assert f"🔎 Matched topic: #{topics[0].id} " in text
            assert "Key Takeaways" in text  # the takeaways stay; the why block says less


def test_why_it_matched_fits_a_caption_and_a_discord_field() -> None:
    from bot.models import MatchReason
    from bot.render.discord import FIELD_VALUE_LIMIT, paper_embed
    from bot.render.telegram import caption_html
    from tests.test_render import make_summary

    doc = MatchDoc("x", SEED_ABSTRACT, ("A",), ("cs.CV",))
    why = [MatchReason(i + 1, q, tuple(matched_terms(parse_query(q), doc)))
           for i, q in enumerate(_long_matching_queries(3))]
    summary = make_summary()
    caption = caption_html(summary, why)
    assert len(caption) <= 1024 and "🔎 Matched topic: #1 " in parse_html(caption)
    [field] = [f for f in paper_embed(summary, why)["fields"] if f["name"] == "Matched topic"]
    assert len(field["value"]) <= FIELD_VALUE_LIMIT and field["value"].startswith("🔎 #1 `")
    assert field["value"].count("**") % 2 == 0  # never cut inside the bold of a term


def test_a_number_in_full_width_forms_is_marked_where_it_is_written() -> None:
    """A Chinese summary may write "９７.３％" or "97.3％": the number was listed as unsupported in its
    normalised form ("97.3%"), which the renderers could not find in the takeaway to mark it."""
    from bot.grounding import ground
    from bot.render.markdown import render_summary_markdown
    from tests.test_render import chinese_summary

    summary = chinese_summary()
    summary.content.key_takeaways = ["准确率达到９７.３％。", "速度提升了3.5倍，学习率为10⁻⁴。", "弥合分布差异。"]
    grounded = ground(summary.content, summary.paper, "accuracy of 90.1% with a 2x speed-up at 10−5")
    assert grounded.unsupported_numbers == ["９７.３％", "3.5倍", "10⁻⁴"]
    summary.content = grounded
    card = parse_html(card_html(summary))
    assert "准确率达到９７.３％⚠。" in card and "速度提升了3.5倍⚠，学习率为10⁻⁴⚠。" in card
    assert "3.5倍⚠" in render_summary_markdown(summary)


async def test_a_post_whose_message_ids_cannot_be_kept_is_still_delivered_once(components: Components) -> None:
    """Keeping the post's message ids (for replies) comes after the post is out: its failure must not
    count as a failed delivery, or the next push sends the whole post again."""
    c = components
    with FakeTelegram() as tg:
        from telegram.ext import ExtBot

        async with ExtBot(TOKEN, base_url=f"{tg.url}/bot", base_file_url=f"{tg.url}/file/bot") as bot:
            chat = await c.store.ensure_chat(Chat(Platform.TELEGRAM, str(ALICE["id"]), ChatKind.PRIVATE))
            paper = await Service(c).find_paper(SEED_ID)
            topic, _ = await c.store.add_topic(chat.id, "cat:cs.CV")  # type: ignore[arg-type]
            await c.store.add_matches([(topic.id, paper.arxiv_id, date(2024, 5, 6))])
            await c.store.set_meta("last_announcement", "2024-05-06")
            await c.store.execute("DROP TABLE post_messages")  # the store refuses the bookkeeping
            senders = {Platform.TELEGRAM: TelegramSender(bot, c.buttons, c.store)}
            report = await push_once(c, force=True, senders=senders)
            assert report.papers == 1 and report.failures == 0, report
            await push_once(c, force=True, senders=senders)
            cards = [call for call in tg.calls_to("sendMessage", ALICE["id"]) if "reply_markup" in call.params]
            assert len(cards) == 1


def test_a_summary_with_very_many_unsupported_numbers_still_renders_within_limits() -> None:
    """A degenerate reply (a results field that counts on and on) lists hundreds of numbers: the
    notice grew past a message and the post could not be rendered at all."""
    from bot.render.discord import EMBED_TOTAL_LIMIT, breakdown_chunks, embed_length, paper_embed
    from bot.render.telegram import breakdown_messages, caption_html
    from tests.test_render import make_summary

    numbers = [f"{n}.{n % 7}%" for n in range(100, 1100)]
    summary = make_summary(results="Scores: " + ", ".join(numbers) + ".", unsupported_numbers=numbers)
    card = parse_html(card_html(summary))
    assert "⚠ Numbers not found in the paper: 100.2%, 101.3%" in card and "more" in card
    assert len(caption_html(summary)) <= 1024
    assert all(len(p) <= 4096 for p in breakdown_messages(summary))
    embed = paper_embed(summary)
    assert embed_length(embed) <= EMBED_TOTAL_LIMIT and "Numbers not found" in embed["description"]
    assert all(len(c) <= 2000 for c in breakdown_chunks(summary))


def test_a_discord_embed_with_an_overlong_summary_keeps_the_numbers_notice() -> None:
    from bot.render.discord import EMBED_TOTAL_LIMIT, embed_length, paper_embed
    from tests.test_render import make_summary

    summary = make_summary(summary="It reaches 97.3% accuracy " + "and more words " * 400, unsupported_numbers=["97.3%"])
    embed = paper_embed(summary)
    assert embed_length(embed) <= EMBED_TOTAL_LIMIT and len(embed["description"]) <= 4096
    assert embed["description"].endswith("**⚠ Numbers not found in the paper: 97.3%**")


def test_a_summary_stored_before_grounding_says_not_checked_not_not_found() -> None:
    """The breakdown button of an old post loads a summary made before quotes were checked: each
    takeaway said "not found in the paper", a claim about the paper nobody had checked."""
    from bot.models import content_from_dict, content_to_dict
    from bot.render.telegram import breakdown_messages
    from tests.test_render import make_summary

    summary = make_summary()
    stored = content_to_dict(summary.content)
    del stored["evidence"], stored["unsupported_numbers"]
    summary.content = content_from_dict(stored)
    card = parse_html(card_html(summary))
    assert "⚠ not checked against the paper" in card and NOT_FOUND not in card
    breakdown = "\n".join(parse_html(p) for p in breakdown_messages(summary))
    assert "Sources" not in breakdown and NOT_FOUND not in breakdown
    assert render_summary_markdown(summary).count("⚠ not checked against the paper") == 3
    assert summary.to_json()["evidence"][0] == {"quote": None, "verified": False, "page": None}
