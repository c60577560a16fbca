"""Discord: slash commands over the gateway, and REST sends for the daily push.

The chat commands are the Service's; this module only translates interactions into Service
calls and results into Discord messages. The "Full breakdown" button keeps everything it needs
in its custom_id, so it works on messages sent before a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Iterator
from datetime import date
from pathlib import Path
from typing import Any, Literal

import aiohttp
import discord
from discord import app_commands
from discord.utils import escape_markdown

from bot.app import Components
from bot.models import Chat, ChatKind, Paper, Platform, Summary
from bot.render.card import clip, one_line
from bot.render.discord import breakdown_chunks, paper_embed, split_text
from bot.render.labels import labels_for
from bot.sender import ChatGone, PermanentSendError, TransientSendError
from bot.service import HELP_TEXT, Service, UserError

log = logging.getLogger(__name__)

MAX_FILES = 4
# Discord's upload limit for bots in servers without boosts; bigger thumbnails are left out.
MAX_FILE_BYTES = 10 * 2**20
UNKNOWN_CHANNEL = 10003
LOST_ACCESS = {50001, 50007}  # Missing Access; Cannot send messages to this user
ADMIN_ONLY = (
    "Only server admins (Manage Server permission) can change this channel's topics and settings. "
    "Anyone can use /topics, /summary, /digest and /settings without arguments."
)
SettingName = Literal["language", "time", "timezone", "max"]


class PaperBot(discord.Client):
    def __init__(self, c: Components) -> None:
        # Slash commands and buttons arrive as interactions: no privileged intent is needed.
        # No message of ours may ping anyone, whatever a paper title or query says.
        super().__init__(intents=discord.Intents.default(), allowed_mentions=discord.AllowedMentions.none())
        self.c = c
        self.service = Service(c)
        self.tree = app_commands.CommandTree(self)
        self.tree.error(self._on_command_error)
        for command in COMMANDS:
            self.tree.add_command(command)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(BreakdownButton)

    async def _on_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        await report_error(interaction, cause)


def bot_of(interaction: discord.Interaction) -> PaperBot:
    client = interaction.client
    assert isinstance(client, PaperBot)
    return client


async def report_error(interaction: discord.Interaction, error: BaseException) -> None:
    """A UserError's message is the answer; anything else is logged and answered generically."""
    if isinstance(error, UserError):
        first, _, rest = str(error).partition("\n")
        # A query error's second part is the query with a caret under the failing place:
        # a code block keeps the caret in its column and `*` or `_` from turning into markup.
        text = first + (f"\n```\n{rest.replace('`', 'ˋ')}\n```" if rest.strip() else "")
    else:
        log.error("Discord interaction failed: %s: %s", type(error).__name__, error, exc_info=error)
        text = "Something went wrong on our side; please try again later."
    with contextlib.suppress(discord.HTTPException):
        await reply(interaction, text, ephemeral=True)


async def reply(interaction: discord.Interaction, text: str, *, ephemeral: bool = False) -> None:
    # After a defer, the first followup replaces the "thinking…" message; the rest follow it.
    for chunk in split_text(text):
        if interaction.response.is_done():
            await interaction.followup.send(chunk, ephemeral=ephemeral)
        else:
            await interaction.response.send_message(chunk, ephemeral=ephemeral)


def chat_of(interaction: discord.Interaction) -> Chat:
    """The chat is the channel: topics and settings belong to it, as in Telegram groups."""
    channel = interaction.channel
    if interaction.guild_id is None:
        return Chat(Platform.DISCORD, str(interaction.channel_id), ChatKind.DM, str(interaction.user))
    name = getattr(channel, "name", None) or ""
    return Chat(Platform.DISCORD, str(interaction.channel_id), ChatKind.GUILD, f"#{name}" if name else "")


def is_admin(interaction: discord.Interaction) -> bool:
    if interaction.guild_id is None:
        return True
    perms = interaction.permissions
    return perms.administrator or perms.manage_guild


async def registered_chat(interaction: discord.Interaction) -> Chat:
    return await bot_of(interaction).service.register_chat(chat_of(interaction))


# --- paper messages (shared by /summary, /digest and the push) ---------------------------


def paper_message(summary: Summary, images: list[Path]) -> dict[str, Any]:
    """Keyword arguments for `send`: the embed, up to four thumbnails and the buttons."""
    usable = [p for p in images if p.is_file() and p.stat().st_size <= MAX_FILE_BYTES][:MAX_FILES]
    files = [discord.File(p, filename=f"figure{i}{p.suffix.lower()}") for i, p in enumerate(usable, 1)]
    embed = paper_embed(summary)
    if files and "image" not in embed:
        # The first figure shows inside the embed; the others below it.
        embed["image"] = {"url": f"attachment://{files[0].filename}"}
    return {"embed": discord.Embed.from_dict(embed), "files": files, "view": paper_view(summary)}


def paper_view(summary: Summary) -> discord.ui.View:
    p = summary.paper
    view = discord.ui.View(timeout=None)
    view.add_item(BreakdownButton(p.arxiv_id, p.version, summary.language))
    if p.pdf_url:
        view.add_item(discord.ui.Button(label="PDF", url=p.pdf_url))
    view.add_item(discord.ui.Button(label="arXiv", url=p.abs_url))
    return view


class BreakdownButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"bd\|(?P<arxiv_id>[^|]+)\|(?P<version>\d+)\|(?P<language>[^|]+)",
):
    """Sends the paper's full breakdown; custom_id `bd|<id>|<version>|<language>`."""

    def __init__(self, arxiv_id: str, version: int, language: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Full breakdown",
                style=discord.ButtonStyle.primary,
                custom_id=f"bd|{arxiv_id}|{version}|{language}",
            )
        )
        self.arxiv_id, self.version, self.language = arxiv_id, version, language

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> BreakdownButton:
        return cls(match["arxiv_id"], int(match["version"]), match["language"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await interaction.response.defer(thinking=True)
            summary = await bot_of(interaction).service.breakdown_summary(
                f"{self.arxiv_id}v{self.version}", self.language, f"discord:{interaction.user.id}"
            )
            for chunk in breakdown_chunks(summary):
                await interaction.followup.send(chunk)
        except Exception as exc:
            await report_error(interaction, exc)


# --- slash commands --------------------------------------------------------------------


@app_commands.command(name="start", description="What this bot does, and its commands")
async def start_command(interaction: discord.Interaction) -> None:
    await reply(interaction, HELP_TEXT)


@app_commands.command(name="help", description="What this bot does, and its commands")
async def help_command(interaction: discord.Interaction) -> None:
    await reply(interaction, HELP_TEXT)


@app_commands.command(name="subscribe", description="Follow an arXiv topic in this channel (admins)")
@app_commands.describe(query='arXiv search syntax, e.g. cat:cs.CV AND ti:diffusion, au:hinton, "graph neural"')
async def subscribe_command(interaction: discord.Interaction, query: str) -> None:
    if not is_admin(interaction):
        await reply(interaction, ADMIN_ONLY, ephemeral=True)
        return
    await interaction.response.defer(thinking=True)
    result = await bot_of(interaction).service.subscribe(await registered_chat(interaction), query)
    t = result.topic
    head = "Subscribed" if result.created else "Already subscribed"
    lines = [f"{head}: #{t.id} `{code(t.query)}`"]
    if result.preview:
        lines.append("Recent matches:")
        lines += [f"• {paper_line(p)}" for p in result.preview]
    elif result.preview_error:
        lines.append(f"({result.preview_error})")
    else:
        lines.append("No recent papers match yet; new ones will arrive with the daily push.")
    await reply(interaction, "\n".join(lines))


@app_commands.command(name="unsubscribe", description="Stop following topics (admins)")
@app_commands.describe(target="a topic id from /topics (or several: 1 3), the query itself, or all")
async def unsubscribe_command(interaction: discord.Interaction, target: str) -> None:
    if not is_admin(interaction):
        await reply(interaction, ADMIN_ONLY, ephemeral=True)
        return
    await interaction.response.defer(thinking=True)
    removed = await bot_of(interaction).service.unsubscribe(await registered_chat(interaction), target)
    if not removed:
        await reply(interaction, "This channel has no topics.")
        return
    await reply(interaction, "Removed:\n" + "\n".join(f"#{t.id} `{code(t.query)}`" for t in removed))


@app_commands.command(name="topics", description="This channel's topics, with their ids")
async def topics_command(interaction: discord.Interaction) -> None:
    await interaction.response.defer(thinking=True)
    topics = await bot_of(interaction).service.topics(await registered_chat(interaction))
    if not topics:
        await reply(interaction, "No topics yet. Add one with /subscribe, e.g. /subscribe cat:cs.CV AND ti:diffusion")
        return
    await reply(interaction, "Topics:\n" + "\n".join(f"#{t.id} `{code(t.query)}`" for t in topics))


@app_commands.command(name="summary", description="Summary, key takeaways and figures of one arXiv paper")
@app_commands.rename(paper_id="id")
@app_commands.describe(paper_id="2405.01872, arXiv:2405.01872v2, an arxiv.org link or hep-th/9901001")
async def summary_command(interaction: discord.Interaction, paper_id: str) -> None:
    await interaction.response.defer(thinking=True)
    bot = bot_of(interaction)
    chat = await registered_chat(interaction)
    result = await bot.service.summarize(paper_id, chat.language, user_key=f"discord:{interaction.user.id}")
    await interaction.followup.send(**paper_message(result.summary, result.images))


@app_commands.command(name="settings", description="Show this channel's settings; admins change one")
@app_commands.describe(name="the setting to change", value="language: en, zh, German…; time: HH:MM; timezone: Area/City; max: 1-50")
async def settings_command(
    interaction: discord.Interaction, name: SettingName | None = None, value: str | None = None
) -> None:
    changing = name is not None or value is not None
    if changing and not is_admin(interaction):
        await reply(interaction, ADMIN_ONLY, ephemeral=True)
        return
    await interaction.response.defer(thinking=True)
    service = bot_of(interaction).service
    chat = await registered_chat(interaction)
    if changing:
        chat = await service.change_setting(chat, [a for a in (name, value) if a])
    head = "Settings changed." if changing else "Settings of this channel:"
    lines = [f"**{k}**: {escape_markdown(v)}" for k, v in service.describe_settings(chat)]
    await reply(interaction, "\n".join([head, *lines, "Change one with /settings name value."]))


@app_commands.command(name="digest", description="Today's matches for this channel, now")
async def digest_command(interaction: discord.Interaction) -> None:
    from bot.delivery import digest_for_chat  # the push machinery is not needed until asked

    await interaction.response.defer(thinking=True)
    bot = bot_of(interaction)
    chat = await registered_chat(interaction)
    day, summaries = await digest_for_chat(bot.c, chat)
    if day is None or not summaries:
        await reply(interaction, "No new papers match this channel's topics today. See /topics.")
        return
    await reply(interaction, header_text("Today's papers", day, len(summaries)))
    for s in summaries:
        await interaction.followup.send(**paper_message(s, [Path(p) for p in s.images]))


COMMANDS: list[app_commands.Command[Any, Any, Any]] = [
    start_command, help_command, subscribe_command, unsubscribe_command, topics_command,
    summary_command, settings_command, digest_command,
]


def code(text: str) -> str:
    """Text inside a `code span`, which cannot hold a backtick."""
    return text.replace("`", "'")


def paper_line(p: Paper) -> str:
    # <url> keeps Discord from unfurling one preview per link.
    return f"**{escape_markdown(clip(one_line(p.title), 300))}** <{p.abs_url}>"


def header_text(title: str, day: date, count: int) -> str:
    noun = "paper" if count == 1 else "papers"
    return f"**{escape_markdown(clip(one_line(title), 1000))}** — {day.isoformat()}: {count} new {noun}"


# --- the push ----------------------------------------------------------------------------


class DiscordSender:
    """Sends to channels over REST; needs the client logged in, not the gateway."""

    platform = Platform.DISCORD

    def __init__(self, client: discord.Client) -> None:
        self.client = client

    async def send_header(self, chat: Chat, title: str, day: date, count: int) -> None:
        await self._send(chat, content=header_text(title, day, count))

    async def send_paper(self, chat: Chat, summary: Summary, images: list[Path]) -> None:
        await self._send(chat, **paper_message(summary, images))

    async def send_paper_list(self, chat: Chat, papers: list[Paper]) -> None:
        text = labels_for(chat.language).more_papers + "\n" + "\n".join(f"• {paper_line(p)}" for p in papers)
        for chunk in split_text(text):
            await self._send(chat, content=chunk)

    async def _send(self, chat: Chat, **kwargs: Any) -> None:
        channel = self.client.get_partial_messageable(int(chat.chat_id))
        with _gone_on_lost_access(chat):
            await channel.send(**kwargs)


@contextlib.contextmanager
def _gone_on_lost_access(chat: Chat) -> Iterator[None]:
    try:
        yield
    except discord.Forbidden as exc:
        # Only lost access means the chat is gone; a missing permission (say Attach Files,
        # 50013) is an ordinary failure that is recorded and retried, not a switch-off.
        if exc.code not in LOST_ACCESS:
            raise PermanentSendError(f"Discord channel {chat.chat_id}: {exc.text or 'forbidden'} ({exc.code})") from None
        raise ChatGone(f"Discord channel {chat.chat_id}: {exc.text or 'forbidden'}") from None
    except discord.NotFound as exc:
        if exc.code != UNKNOWN_CHANNEL:
            raise PermanentSendError(f"Discord channel {chat.chat_id}: {exc.text or 'not found'} ({exc.code})") from None
        raise ChatGone(f"Discord channel {chat.chat_id} no longer exists") from None
    except discord.HTTPException as exc:
        if exc.status == 429 or exc.status >= 500:
            raise TransientSendError(f"Discord: HTTP {exc.status}: {exc.text}") from None
        raise PermanentSendError(f"Discord refused the message: HTTP {exc.status}: {exc.text}") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise TransientSendError(f"Discord: {type(exc).__name__}: {exc}") from None


# --- start and stop ----------------------------------------------------------------------


async def start_discord(c: Components) -> tuple[DiscordSender, Awaitable[None]]:
    """Log in, sync the slash commands once, and run the gateway in a background task."""
    token = c.settings.discord_bot_token
    if token is None:
        raise UserError("Set DISCORD_BOT_TOKEN to run the Discord bot.")
    client = PaperBot(c)
    try:
        await client.login(token.get_secret_value())
        synced = await client.tree.sync()
    except discord.LoginFailure:
        await client.close()
        raise UserError("Discord rejected DISCORD_BOT_TOKEN; check the token in the developer portal.", 1) from None
    except BaseException:
        await client.close()
        raise
    gateway = asyncio.create_task(client.connect(reconnect=True), name="discord-gateway")
    gateway.add_done_callback(_log_gateway_end)
    log.info("Discord bot logged in as %s; %d slash commands synced", client.user, len(synced))
    return DiscordSender(client), _stop(client, gateway)


@contextlib.asynccontextmanager
async def rest_sender(c: Components) -> AsyncIterator[DiscordSender]:
    """A sender for `paperbot push`: logged in over REST, no gateway connection."""
    token = c.settings.discord_bot_token
    if token is None:
        raise UserError("Set DISCORD_BOT_TOKEN to push to Discord.")
    client = discord.Client(intents=discord.Intents.none(), allowed_mentions=discord.AllowedMentions.none())
    try:
        await client.login(token.get_secret_value())
    except discord.LoginFailure:
        await client.close()
        raise UserError("Discord rejected DISCORD_BOT_TOKEN; check the token in the developer portal.", 1) from None
    try:
        yield DiscordSender(client)
    finally:
        await client.close()


def _log_gateway_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("Discord gateway stopped: %s", task.exception())


async def _stop(client: discord.Client, gateway: asyncio.Task[None]) -> None:
    await client.close()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(gateway, 10)
