"""The Discord adapter with the real discord.py client against a fake Discord on loopback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import pytest
from discord.utils import escape_markdown
from pydantic import SecretStr

from bot.app import Components
from bot.buttons import BreakdownRef
from bot.discord_bot import DiscordSender, start_discord
from bot.models import Chat, ChatKind, Paper, Platform, Summary
from bot.render.discord import breakdown_chunks, paper_embed
from bot.sender import ChatGone, PermanentSendError, TransientSendError
from bot.service import Service, UserError
from tests.fakes.discord import (
    ADMINISTRATOR, CHANNEL_ID, MANAGE_GUILD, MEMBER, FakeDiscord, SentMessage,
)

TOKEN = "MTEwMDAwMDAwMDAwMDAwMDAwMQ.Gfake1.discord-token-used-only-by-these-tests"
PAPER = "2405.01872"
PUSH_CHANNEL = 1_300_000_000_000_000_001


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDiscord]:
    with FakeDiscord(TOKEN) as fake:
        fake.install(monkeypatch)
        yield fake


@asynccontextmanager
async def running_bot(c: Components, fake: FakeDiscord) -> AsyncIterator[DiscordSender]:
    c.settings.discord_bot_token = SecretStr(TOKEN)
    before = fake.identified
    sender, stopper = await start_discord(c)
    try:
        await fake.wait_for(lambda: fake.identified > before, what="IDENTIFY on the gateway")
        yield sender
    finally:
        await stopper


@pytest.fixture
async def bot(components: Components, fake: FakeDiscord) -> AsyncIterator[DiscordSender]:
    async with running_bot(components, fake) as sender:
        yield sender


async def answer(fake: FakeDiscord, token: str, count: int = 1, timeout: float = 40) -> list[SentMessage]:
    return await fake.wait_for(
        lambda: (r := fake.replies(token)) and len(r) >= count and r, timeout, f"{count} replies to {token}"
    )


def embed_total(embed: dict[str, Any]) -> int:
    """Discord's 6000-character budget: title, description, field names and values, footer, author."""
    parts = [embed.get("title", ""), embed.get("description", "")]
    parts += [f.get("name", "") + f.get("value", "") for f in embed.get("fields", [])]
    parts += [embed.get("footer", {}).get("text", ""), embed.get("author", {}).get("name", "")]
    return sum(len(p) for p in parts)


async def poll_leaves_a_match(c: Components, channel_id: int) -> Paper:
    """What a poll leaves behind: the paper, the channel's topic, the match, the announcement day."""
    service = Service(c)
    paper = await service.find_paper(PAPER)
    chat = await service.register_chat(Chat(Platform.DISCORD, str(channel_id), ChatKind.GUILD))
    topic = (await service.subscribe(chat, "cat:cs.CV")).topic
    day = date(2024, 5, 3)
    await c.store.add_matches([(topic.id, paper.arxiv_id, day)])
    await c.store.set_meta("last_announcement", day.isoformat())
    return paper


async def cached_summary(c: Components) -> Summary:
    result = await Service(c).summarize(PAPER, "en")
    assert result.cached, "the bot should have stored the summary it sent"
    return result.summary


async def test_summary_defers_then_sends_embed_figures_and_buttons(
    fake: FakeDiscord, bot: DiscordSender, components: Components, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = fake.slash("summary", {"id": PAPER})
    [msg] = await answer(fake, token)

    # "thinking…" first (a deferred response), then the post as its followup
    assert [c.type for c in fake.callbacks_for(token)] == [5]
    assert msg.via == "followup"
    summary = await cached_summary(components)
    [embed] = msg.embeds
    expected = paper_embed(summary)
    assert {k: embed.get(k) for k in expected} == expected  # title linked to the abstract page, footer...
    assert escape_markdown(summary.content.summary)[:60] in embed["description"]
    assert escape_markdown(summary.content.key_takeaways[0])[:60] in embed["description"]
    assert embed_total(embed) <= 6000 and len(msg.content) <= 2000

    assert 1 <= len(msg.files) <= 4
    for name, data in msg.files:
        assert data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff", name
    assert embed["image"]["url"] == f"attachment://{msg.files[0][0]}"

    buttons = {b.get("label"): b for b in msg.buttons()}
    assert components.buttons.read(buttons["Full breakdown"]["custom_id"]) == BreakdownRef(
        PAPER, summary.paper.version, "en"
    )
    assert buttons["PDF"]["url"] == summary.paper.pdf_url
    assert buttons["arXiv"]["url"] == summary.paper.abs_url

    # the client used its default gateway compression, and the token went nowhere it should not
    assert any(r.path == "/gateway/" and r.query.get("compress") == "zlib-stream" for r in fake.requests)
    assert TOKEN not in caplog.text
    assert all(TOKEN not in m.content for m in fake.messages)


async def test_pushed_paper_and_its_breakdown_button_after_a_restart(
    fake: FakeDiscord, components: Components
) -> None:
    result = await Service(components).summarize(PAPER, "en")
    chat = Chat(Platform.DISCORD, str(PUSH_CHANNEL), ChatKind.GUILD)
    async with running_bot(components, fake) as sender:
        await sender.send_header(chat, "cs.CV daily", date(2024, 5, 3), 1)
        await sender.send_paper(chat, result.summary, result.images)
        await sender.send_paper_list(chat, [result.summary.paper])
    header, post, rest = fake.in_channel(PUSH_CHANNEL)
    assert rest.content.startswith("More papers today:\n• **") and f"<{result.summary.paper.abs_url}>" in rest.content
    assert header.content == "**cs.CV daily** — 2024-05-03: 1 new paper"
    assert header.request["allowed_mentions"] == post.request["allowed_mentions"] == {"parse": []}
    assert post.embeds[0]["url"] == result.summary.paper.abs_url and post.files

    # A new process: the button on the old message still answers.
    async with running_bot(components, fake):
        token = fake.click(post, components.buttons.breakdown(PAPER, result.summary.paper.version, "en"))
        expected = breakdown_chunks(result.summary)
        replies = await answer(fake, token, len(expected))
    assert [c.type for c in fake.callbacks_for(token)] == [5]
    assert [m.content for m in replies] == expected
    assert all(len(m.content) <= 2000 for m in replies)


@pytest.mark.parametrize(
    ("guild", "permissions", "allowed"),
    [(True, MEMBER, False), (True, MEMBER | MANAGE_GUILD, True), (True, ADMINISTRATOR, True), (False, 0, True)],
    ids=["guild-member", "guild-manage-server", "guild-administrator", "dm"],
)
async def test_only_admins_subscribe_in_servers(
    fake: FakeDiscord, bot: DiscordSender, components: Components, guild: bool, permissions: int, allowed: bool
) -> None:
    query = "cat:cs.CV AND ti:diffusion"
    token = fake.slash("subscribe", {"query": query}, guild=guild, permissions=permissions)
    [msg] = await answer(fake, token)
    chat = await components.store.get_chat(Platform.DISCORD, str(fake.channel_of(token)))
    topics = await components.store.list_topics(chat.id) if chat and chat.id else []
    if allowed:
        assert msg.content.startswith(f"Subscribed: #{topics[0].id} `{Service.parse_topic(query)}`")
        assert [t.query for t in topics] == [Service.parse_topic(query)]
        assert chat is not None and chat.kind == (ChatKind.GUILD if guild else ChatKind.DM)
    else:
        assert msg.via == "callback" and msg.flags & 64  # only the asker sees the refusal
        assert "Manage Channels" in msg.content
        assert topics == []


async def test_topics_settings_and_unsubscribe(fake: FakeDiscord, bot: DiscordSender, components: Components) -> None:
    admin = MEMBER | MANAGE_GUILD
    [sub] = await answer(fake, fake.slash("subscribe", {"query": "au:hinton"}, permissions=admin))
    assert sub.content.startswith("Subscribed: #")
    [listing] = await answer(fake, fake.slash("topics"))
    assert "au:hinton" in listing.content
    assert listing.request["allowed_mentions"] == {"parse": []}  # nothing we post pings anyone

    [refused] = await answer(fake, fake.slash("settings", {"name": "language", "value": "zh"}))
    assert "Manage Channels" in refused.content
    [changed] = await answer(fake, fake.slash("settings", {"name": "language", "value": "zh"}, permissions=admin))
    assert changed.content.startswith("Settings changed.") and "zh" in changed.content
    chat = await components.store.get_chat(Platform.DISCORD, str(CHANNEL_ID))
    assert chat is not None and chat.language == "zh"

    [removed] = await answer(fake, fake.slash("unsubscribe", {"target": "all"}, permissions=admin))
    assert removed.content.startswith("Removed:") and "au:hinton" in removed.content
    assert await components.store.list_topics(chat.id) == []  # type: ignore[arg-type]


async def test_digest_posts_todays_matches(fake: FakeDiscord, bot: DiscordSender, components: Components) -> None:
    [empty] = await answer(fake, fake.slash("digest"))
    assert empty.content.startswith("No new papers match this channel's topics today")

    paper = await poll_leaves_a_match(components, CHANNEL_ID)

    header, post = await answer(fake, fake.slash("digest"), 2)
    assert header.content == "**Today's papers** — 2024-05-03: 1 new paper"
    assert post.embeds[0]["url"] == paper.abs_url and post.files
    assert components.buttons.breakdown(PAPER, paper.version, "en") in {b.get("custom_id") for b in post.buttons()}

    # A server channel has the day's digest once: a repeat points at it instead of posting it again.
    [again] = await answer(fake, fake.slash("digest"))
    assert again.content.startswith("The digest of 2024-05-03 was posted in this chat already")
    assert int(again.payload.get("flags") or 0) & 64  # only the asker sees it


async def test_bad_id_and_bad_query_get_the_clear_error(
    fake: FakeDiscord, bot: DiscordSender, components: Components
) -> None:
    with pytest.raises(UserError) as bad_id:
        await Service(components).summarize("not-a-paper", "en")
    [msg] = await answer(fake, fake.slash("summary", {"id": "not-a-paper"}))
    assert msg.content == str(bad_id.value) and not msg.embeds

    token = fake.slash("subscribe", {"query": "ti:(diffus* OR au:hinton_g"}, permissions=MANAGE_GUILD)
    [msg] = await answer(fake, token)
    assert msg.content.startswith("Could not read that query:")
    # The query and its caret stay verbatim and aligned in a code block.
    block = msg.content.split("```\n", 1)[1].rsplit("\n```", 1)[0]
    query_line, caret_line = block.splitlines()[-2:]
    assert "diffus* OR au:hinton_g" in query_line and caret_line.strip() == "^"


@pytest.mark.parametrize(("status", "code"), [(403, 50001), (403, 50007), (404, 10003)])
async def test_a_channel_the_bot_lost_is_chat_gone(
    fake: FakeDiscord, bot: DiscordSender, status: int, code: int
) -> None:
    fake.fail_channel(PUSH_CHANNEL, status, code)
    chat = Chat(Platform.DISCORD, str(PUSH_CHANNEL), ChatKind.GUILD)
    with pytest.raises(ChatGone):
        await bot.send_header(chat, "cs.CV daily", date(2024, 5, 3), 2)
    assert fake.in_channel(PUSH_CHANNEL) == []


async def test_a_missing_permission_is_a_failure_not_a_lost_channel(fake: FakeDiscord, bot: DiscordSender) -> None:
    fake.fail_channel(PUSH_CHANNEL, 403, 50013, "Missing Permissions")
    chat = Chat(Platform.DISCORD, str(PUSH_CHANNEL), ChatKind.GUILD)
    with pytest.raises(PermanentSendError, match="Missing Permissions"):
        await bot.send_header(chat, "cs.CV daily", date(2024, 5, 3), 2)


async def test_a_server_error_is_transient(fake: FakeDiscord, bot: DiscordSender) -> None:
    # 503: discord.py itself retries 500/502/504 for about 25 s before it gives up.
    fake.fail_channel(PUSH_CHANNEL, 503, 0, "upstream trouble")
    chat = Chat(Platform.DISCORD, str(PUSH_CHANNEL), ChatKind.GUILD)
    with pytest.raises(TransientSendError):
        await bot.send_header(chat, "cs.CV daily", date(2024, 5, 3), 2)


async def test_a_rejected_token_is_a_clear_error_without_the_token(fake: FakeDiscord, components: Components) -> None:
    components.settings.discord_bot_token = SecretStr("wrong-" + TOKEN)
    with pytest.raises(UserError) as err:
        await start_discord(components)
    assert "DISCORD_BOT_TOKEN" in str(err.value) and TOKEN not in str(err.value)


async def test_cli_push_reaches_discord_over_rest_without_a_gateway(
    fake: FakeDiscord, components: Components
) -> None:
    """`paperbot push --now` builds its own Discord sender: REST login, no gateway connection."""
    from bot.delivery import push_once
    from bot.senders import push_senders

    components.settings.discord_bot_token = SecretStr(TOKEN)
    paper = await poll_leaves_a_match(components, PUSH_CHANNEL)

    async with push_senders(components.settings, components) as senders:
        report = await push_once(components, force=True, senders=senders)
    sent = fake.in_channel(PUSH_CHANNEL)
    assert [m.content for m in sent][0].startswith("**cat:cs.CV** — 2024-05-03: 1 new paper")
    assert sent[1].embeds[0]["url"] == paper.abs_url
    assert fake.identified == 0  # no gateway session was opened
    assert "1" in str(report)
    async with push_senders(components.settings, components) as senders:
        again = await push_once(components, force=True, senders=senders)
    assert len(fake.in_channel(PUSH_CHANNEL)) == len(sent), again


async def test_commands_and_buttons_are_counted_in_the_metrics(
    fake: FakeDiscord, bot: DiscordSender, components: Components
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    [post] = await answer(fake, fake.slash("summary", {"id": PAPER}))
    await answer(fake, fake.slash("help", {}))
    await answer(fake, fake.click(post, post.buttons()[0]["custom_id"]))
    text = components.metrics.exposition().decode()
    counted = {
        s.labels["command"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "paperbot_requests_total" and s.labels["platform"] == "discord"
    }
    assert counted == {"summary": 1, "help": 1, "breakdown": 1}
    assert str(CHANNEL_ID) not in text
