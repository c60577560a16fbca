"""Abuse, cost and bad input on Discord (issue 10): the real discord.py client against FakeDiscord."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.app import Components, build_components
from bot.config import load_settings
from bot.discord_bot import ALREADY_POSTED, STALE_BUTTON, DiscordSender
from bot.models import Chat, ChatKind, Platform, Summary, SummaryContent
from bot.render.discord import breakdown_chunks
from bot.service import Service, UserError
from tests.conftest import env_for
from tests.fakes.arxiv import SEED_ID, FakeArxiv
from tests.fakes.discord import (
    ADMINISTRATOR,
    CHANNEL_ID,
    GUILD_ID,
    MANAGE_CHANNELS,
    MEMBER,
    USER_ID,
    FakeDiscord,
    SentMessage,
)
from tests.fakes.gemini import FakeGemini
from tests.test_abuse_telegram import HOSTILE
from tests.test_discord import TOKEN, answer, running_bot

PUSH_CHANNEL = 1_300_000_000_000_000_077
EPHEMERAL = 64


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDiscord]:
    with FakeDiscord(TOKEN) as fake:
        fake.install(monkeypatch)
        yield fake


@pytest.fixture
async def bot(components: Components, fake: FakeDiscord) -> AsyncIterator[DiscordSender]:
    async with running_bot(components, fake) as sender:
        yield sender


async def test_channel_changing_commands_are_for_channel_managers(fake: FakeDiscord, bot: DiscordSender) -> None:
    synced = {c["name"]: c.get("default_member_permissions") and str(c["default_member_permissions"]) for c in fake.commands}
    assert synced == {
        "start": None, "help": None, "topics": None, "summary": None, "digest": None, "ask": None,
        "subscribe": str(MANAGE_CHANNELS), "unsubscribe": str(MANAGE_CHANNELS), "settings": str(MANAGE_CHANNELS),
    }
    # The run-time check stays: a server may show the command to others.
    [refused] = await answer(fake, fake.slash("subscribe", {"query": "cat:cs.CV"}, permissions=MEMBER))
    assert refused.flags & EPHEMERAL and "Manage Channels" in refused.content
    [done] = await answer(fake, fake.slash("subscribe", {"query": "cat:cs.CV"}, permissions=MEMBER | MANAGE_CHANNELS))
    assert done.content.startswith("Subscribed: #")


async def test_an_error_after_thinking_reaches_only_the_asker(fake: FakeDiscord, bot: DiscordSender) -> None:
    token = fake.slash("summary", {"id": "2405.99999"})  # well-formed, unknown to arXiv: found out after the defer
    [msg] = await answer(fake, token)
    assert [c.type for c in fake.callbacks_for(token)] == [5]  # "thinking…" was shown
    assert token in fake.deleted_originals  # ...and removed
    assert msg.via == "followup" and msg.flags & EPHEMERAL and "arxiv.org" in msg.content


SLASH: list[tuple[str, str, dict[str, Any]]] = [
    ("subscribe", "query", {}),
    ("unsubscribe", "target", {}),
    ("summary", "id", {}),
    ("settings", "value", {"name": "max"}),
    ("settings", "value", {"name": "time"}),
    ("settings", "value", {"name": "timezone"}),
    ("settings", "value", {"name": "language"}),
]


async def test_hostile_slash_arguments_get_clear_private_replies(
    fake: FakeDiscord, bot: DiscordSender, components: Components
) -> None:
    tokens: dict[str, tuple[str, str, dict[str, Any], str, int]] = {}
    channel = 1_400_000_000_000_000_000
    for command, option, extra in SLASH:
        for name, value in HOSTILE.items():
            channel += 1
            options = {**extra, option: value}
            token = fake.slash(command, options, permissions=MEMBER | MANAGE_CHANNELS, channel_id=channel)
            tokens[token] = (command, option, extra, name, channel)
    for token, case in tokens.items():
        replies = await answer(fake, token)
        text = "\n".join(m.content for m in replies)
        assert "went wrong" not in text.lower(), case
    assert fake.refusals == []

    for token, (command, _, extra, name, channel) in tokens.items():
        value = HOSTILE[name]
        chat = await components.store.get_chat(Platform.DISCORD, str(channel))
        topics = [t.query for t in await components.store.list_topics(chat.id)] if chat and chat.id else []
        try:
            accepted = [Service.parse_topic(value)] if command == "subscribe" else []
        except UserError:
            accepted = []
        assert topics == accepted, (command, name)
        if command == "settings":
            assert chat is not None and (chat.max_papers, chat.language) == (10, "en"), name
            assert (chat.push_time, chat.timezone) == (components.settings.push_time, components.settings.timezone)
        if not accepted:  # refusals reach only the asker, as ephemeral messages
            first = fake.replies(token)[0]
            assert first.flags & EPHEMERAL, (command, extra, name, first.content)


async def post_in_channel(components: Components, sender: DiscordSender, fake: FakeDiscord, paper_id: str) -> SentMessage:
    summary = (await Service(components).summarize(paper_id, "en", with_images=False)).summary
    await sender.send_paper(Chat(Platform.DISCORD, str(PUSH_CHANNEL), ChatKind.GUILD), summary, [])
    return fake.in_channel(PUSH_CHANNEL)[-1]


def breakdown_button(post: SentMessage) -> str:
    [button] = [b for b in post.buttons() if b.get("label") == "Full breakdown"]
    return str(button["custom_id"])


async def test_breakdown_once_per_post_and_forged_buttons(
    fake: FakeDiscord, bot: DiscordSender, components: Components
) -> None:
    post = await post_in_channel(components, bot, fake, SEED_ID)
    custom_id = breakdown_button(post)
    first = fake.click(post, custom_id, permissions=MEMBER, user_id=USER_ID)
    summary = (await Service(components).summarize(SEED_ID, "en", with_images=False)).summary
    chunks = await answer(fake, first, len(breakdown_chunks(summary)))
    assert not any(m.flags & EPHEMERAL for m in chunks)

    for user in (USER_ID + 1, USER_ID, USER_ID + 2):
        again = fake.click(post, custom_id, permissions=MEMBER, user_id=user)
        [pointer] = await answer(fake, again)
        assert pointer.flags & EPHEMERAL and pointer.via == "callback"
        assert pointer.content == ALREADY_POSTED.format(
            url=f"https://discord.com/channels/{GUILD_ID}/{PUSH_CHANNEL}/{chunks[0].id}"
        )
    # Discord sends only a message's own custom_ids, but old posts carry unsigned ones, and posts
    # made with another key (another database) carry tags this bot cannot check.
    for stale_id in (f"bd|{SEED_ID}|1|en", custom_id.replace("|en|", "|de|"), "bd1|1707.08567|1|en|AAAAAAAAAAAAAAAA"):
        old = fake.old_message(PUSH_CHANNEL, stale_id)
        token = fake.click(old, stale_id, permissions=ADMINISTRATOR)
        [stale] = await answer(fake, token)
        assert stale.content == STALE_BUTTON and stale.flags & EPHEMERAL
    breakdowns = [m for m in fake.messages if m.content.startswith("**Full breakdown**")]
    assert len(breakdowns) == 1 and await components.store.get_paper("1707.08567") is None
    assert fake.refusals == []


async def test_a_2900_author_breakdown_is_at_most_three_followups(
    fake: FakeDiscord, bot: DiscordSender, components: Components, fake_arxiv: FakeArxiv
) -> None:
    authors = [f"Author Number{i} Surname{i}" for i in range(2900)]
    fake_arxiv.add_paper("2405.09999", title="A big collaboration", authors=authors,
                         published=datetime(2024, 5, 1, tzinfo=UTC))
    post = await post_in_channel(components, bot, fake, "2405.09999")
    summary = (await Service(components).summarize("2405.09999", "en", with_images=False)).summary
    chunks = breakdown_chunks(summary)
    assert 1 <= len(chunks) <= 3
    token = fake.click(post, breakdown_button(post))
    replies = await answer(fake, token, len(chunks))
    assert [m.content for m in replies] == chunks and all(len(m.content) <= 2000 for m in replies)
    assert "Author Number9 Surname9 … and 2,890 more" in "".join(chunks)
    assert fake.refusals == []


@pytest.fixture
async def gemini_components(
    tmp_path: Path, fake_arxiv: FakeArxiv, fake_gemini: FakeGemini
) -> AsyncIterator[Components]:
    env = env_for(tmp_path, fake_arxiv, fake_gemini) | {"PAPERBOT_SUMMARY_QUOTA": "1"}
    c = await build_components(load_settings(**env))
    try:
        yield c
    finally:
        await c.aclose()


async def test_button_and_digest_draw_on_the_quota(
    fake: FakeDiscord, gemini_components: Components, fake_gemini: FakeGemini
) -> None:
    c = gemini_components
    paper = await Service(c).find_paper(SEED_ID)
    async with running_bot(c, fake) as sender:
        # A post whose summary is no longer stored: its breakdown needs a new LLM call.
        old = Summary(paper, SummaryContent("", "One line.", ["A takeaway."], [], "B.", "", [], "", ""), "de", "gemini:old")
        await sender.send_paper(Chat(Platform.DISCORD, str(PUSH_CHANNEL), ChatKind.GUILD), old, [])
        post = fake.in_channel(PUSH_CHANNEL)[-1]
        await c.store.quota_add(f"discord:{USER_ID}")  # this user's one call of the hour is spent
        [refusal] = await answer(fake, fake.click(post, breakdown_button(post)))
        assert refusal.flags & EPHEMERAL and refusal.content.startswith("You have used your 1 new summaries")
        assert fake_gemini.calls == 0
        [done, *_] = await answer(fake, fake.click(post, breakdown_button(post), user_id=USER_ID + 1))
        assert done.content.startswith("**Full breakdown**") and fake_gemini.calls == 1

        # /digest: the stored German summary is free, the rest waits for the quota.
        chat = await c.store.ensure_chat(Chat(Platform.DISCORD, str(CHANNEL_ID), ChatKind.GUILD, "", "de"))
        topic, _ = await c.store.add_topic(chat.id, "cat:cs.CV")  # type: ignore[arg-type]
        [topic_id] = [t for t, q, _ in await c.store.active_topics() if q == "cat:cs.CV"]
        await Service(c).find_paper("1707.08567")
        await c.store.add_matches([(topic_id, SEED_ID, date(2024, 5, 6)), (topic_id, "1707.08567", date(2024, 5, 6))])
        await c.store.set_meta("last_announcement", "2024-05-06")
        header, card, note = await answer(fake, fake.slash("digest", user_id=USER_ID + 1), 3)
        assert header.content.endswith("2 new papers") and card.embeds
        assert note.content.startswith("1 more paper needs a new summary") and fake_gemini.calls == 1
