"""Discord: slash commands over the gateway, and REST sends for the daily push.

The chat commands are the Service's; this module only translates interactions into Service
calls and results into Discord messages. The "Full breakdown" button keeps everything it needs
in its custom_id, signed (bot.buttons), so it works on messages sent before a restart and cannot
be forged; in servers it posts the breakdown once per post.

The commands that change a channel (/subscribe, /unsubscribe, /settings) are registered with
`default_member_permissions` = Manage Channels, so Discord shows them only to those who may use
them, and are checked again at run time (a server can override who sees a command).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Literal

import aiohttp
import discord
from discord import app_commands
from discord.utils import escape_markdown

from bot.app import Components
from bot.buttons import LEGACY_PREFIX, PREFIX, BreakdownRef, ButtonSigner, claim_kept
from bot.models import Chat, ChatKind, MatchReason, Paper, Platform, Summary
from bot.render.card import clip, one_line
from bot.render.discord import answer_chunks, breakdown_chunks, paper_embed, split_text
from bot.render.labels import labels_for
from bot.sender import ChatGone, PartlySent, PermanentSendError, TransientSendError
from bot.service import HELP_TEXT, Service, UserError, quota_note

log = logging.getLogger(__name__)

MAX_FILES = 4
# Discord's upload limit for bots in servers without boosts; bigger thumbnails are left out.
MAX_FILE_BYTES = 10 * 2**20
UNKNOWN_CHANNEL = 10003
LOST_ACCESS = {50001, 50007}  # Missing Access; Cannot send messages to this user
ADMIN_ONLY = (
    "Only members who may manage this channel (Manage Channels permission) can change its topics and "
    "settings. Anyone can use /topics, /summary and /digest."
)
BUTTON_KIND = "breakdown"
STALE_BUTTON = "This button is out of date. Ask again with /summary and the paper's id, e.g. /summary 2405.01872"
ALREADY_POSTED = "The full breakdown is already in this channel, right after this post: {url}"
BEING_POSTED = "The full breakdown is on its way to this channel."
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
        self.add_dynamic_items(BreakdownButton, StaleBreakdownButton)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        # Every slash command and button passes here first (discord.py dispatches it besides the tree).
        data: Any = interaction.data or {}
        if interaction.type is discord.InteractionType.application_command:
            # Only our own command names become labels: an unknown name must not grow the series.
            name = str(data.get("name", ""))
            known = any(command.name == name for command in COMMANDS)
            self.c.metrics.request(Platform.DISCORD, name if known else "other")
        elif self.c.buttons.read(str(data.get("custom_id", ""))) is not None:
            self.c.metrics.request(Platform.DISCORD, "breakdown")

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
    if _thinking(interaction):
        # The first followup would take the place of the public "thinking…" message and be
        # public too, whatever its flags say: remove it, so the error reaches only the asker.
        try:
            await interaction.delete_original_response()
            interaction.extras["thinking_gone"] = True
        except discord.HTTPException as exc:
            log.warning("could not remove a \"thinking…\" message: %s", exc)
    with contextlib.suppress(discord.HTTPException):
        await reply(interaction, text, ephemeral=True)


def _thinking(interaction: discord.Interaction) -> bool:
    """Whether a public "thinking…" message still waits for its first followup."""
    return (
        interaction.response.type == discord.InteractionResponseType.deferred_channel_message
        and not interaction.extras.get("followed_up")
        and not interaction.extras.get("thinking_gone")
    )


async def followup(interaction: discord.Interaction, content: str | None = None, **kwargs: Any) -> discord.WebhookMessage:
    """interaction.followup.send, remembering that the "thinking…" message has been answered."""
    if content is not None:
        kwargs["content"] = content
    sent = await interaction.followup.send(wait=True, **kwargs)
    interaction.extras["followed_up"] = True
    return sent


async def reply(interaction: discord.Interaction, text: str, *, ephemeral: bool = False) -> None:
    # After a defer, the first followup replaces the "thinking…" message; the rest follow it.
    for chunk in split_text(text):
        if interaction.response.is_done():
            await followup(interaction, chunk, ephemeral=ephemeral)
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
    """In a DM anyone; in a server, who may manage this channel (or the server)."""
    if interaction.guild_id is None:
        return True
    perms = interaction.permissions  # resolved for this channel, overwrites included
    return perms.administrator or perms.manage_channels or perms.manage_guild


async def registered_chat(interaction: discord.Interaction) -> Chat:
    return await bot_of(interaction).service.register_chat(chat_of(interaction))


# --- paper messages (shared by /summary, /digest and the push) ---------------------------


def paper_message(
    summary: Summary, images: list[Path], buttons: ButtonSigner, why: Sequence[MatchReason] = ()
) -> dict[str, Any]:
    """Keyword arguments for `send`: the embed (with `why` it matched, when pushed), up to four
    thumbnails and the buttons."""
    usable = [p for p in images if p.is_file() and p.stat().st_size <= MAX_FILE_BYTES][:MAX_FILES]
    files = [discord.File(p, filename=f"figure{i}{p.suffix.lower()}") for i, p in enumerate(usable, 1)]
    embed = paper_embed(summary, why)
    if files and "image" not in embed:
        # The first figure shows inside the embed; the others below it.
        embed["image"] = {"url": f"attachment://{files[0].filename}"}
    return {"embed": discord.Embed.from_dict(embed), "files": files, "view": paper_view(summary, buttons)}


def paper_view(summary: Summary, buttons: ButtonSigner) -> discord.ui.View:
    p = summary.paper
    view = discord.ui.View(timeout=None)
    data = buttons.breakdown(p.arxiv_id, p.version, summary.language)
    view.add_item(BreakdownButton(data, buttons.read(data)))
    if p.pdf_url:
        view.add_item(discord.ui.Button(label="PDF", url=p.pdf_url))
    view.add_item(discord.ui.Button(label="arXiv", url=p.abs_url))
    return view


def _breakdown_button(custom_id: str) -> discord.ui.Button[Any]:
    return discord.ui.Button(label="Full breakdown", style=discord.ButtonStyle.primary, custom_id=custom_id)


class BreakdownButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"{PREFIX}\|[^|]+\|[0-9]+\|[^|]*\|[A-Za-z0-9_-]+",
):
    """Posts the paper's full breakdown; custom_id is bot.buttons' signed `bd1|id|version|language|tag`.

    In a server it posts once per post (later presses are told where it is); in a DM every press
    may have it. A new summary is charged to the presser's quota; a stored one is free.
    """

    def __init__(self, custom_id: str, ref: BreakdownRef | None) -> None:
        super().__init__(_breakdown_button(custom_id))
        self.ref = ref  # None: not signed by us

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> BreakdownButton:
        return cls(match.group(0), bot_of(interaction).c.buttons.read(match.group(0)))

    async def callback(self, interaction: discord.Interaction) -> None:
        if self.ref is None or interaction.message is None:
            await reply(interaction, STALE_BUTTON, ephemeral=True)
            return
        store = bot_of(interaction).c.store
        post = (str(interaction.channel_id), str(interaction.message.id))
        once = interaction.guild_id is not None
        if once and not await store.claim_button_post(Platform.DISCORD, *post, BUTTON_KIND):
            state = await store.button_post(Platform.DISCORD, *post, BUTTON_KIND)
            if state and state["posted_id"]:
                url = f"https://discord.com/channels/{interaction.guild_id}/{post[0]}/{state['posted_id']}"
                await reply(interaction, ALREADY_POSTED.format(url=url), ephemeral=True)
            else:
                await reply(interaction, BEING_POSTED, ephemeral=True)
            return
        posted: list[discord.WebhookMessage] = []

        async def first_out(message: discord.WebhookMessage) -> None:
            # Recorded as soon as the channel shows the start of it: a failure or a crash before the
            # last followup must not let a later press post it again from the start (SPEC: at most once).
            posted.append(message)
            if once:
                await store.finish_button_post(Platform.DISCORD, *post, BUTTON_KIND, str(message.id))

        try:
            async with claim_kept(store, Platform.DISCORD, *post, BUTTON_KIND) if once else contextlib.nullcontext():
                await self._post(interaction, self.ref, first_out)
        except Exception as exc:
            await report_error(interaction, exc)
        finally:
            if once and not posted:
                await store.release_button_post(Platform.DISCORD, *post, BUTTON_KIND)

    @staticmethod
    async def _post(
        interaction: discord.Interaction, ref: BreakdownRef,
        first_out: Callable[[discord.WebhookMessage], Awaitable[None]],
    ) -> discord.WebhookMessage | None:
        """The breakdown as followups; the first one (also given to `first_out` as soon as it is
        sent), or None when the press was refused (quota)."""
        service = bot_of(interaction).service
        chat = await registered_chat(interaction)
        language = ref.language or chat.language
        summary = await service.cached_breakdown(ref.versioned_id, language)
        if summary is None:
            # Charged before "thinking…", so a refusal is an ephemeral answer, not a public message.
            await service.charge_quota(f"discord:{interaction.user.id}")
        await interaction.response.defer(thinking=True)
        if summary is None:
            summary = (await service.summarize(ref.versioned_id, language, with_images=False)).summary
        first: discord.WebhookMessage | None = None
        for chunk in breakdown_chunks(summary):
            sent = await followup(interaction, chunk)
            if first is None:
                first = sent
                await first_out(sent)
        return first


class StaleBreakdownButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=rf"{re.escape(LEGACY_PREFIX)}.*"
):
    """The unsigned breakdown buttons of earlier versions: answered, never served."""

    def __init__(self, custom_id: str) -> None:
        super().__init__(_breakdown_button(custom_id))

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> StaleBreakdownButton:
        return cls(match.group(0))

    async def callback(self, interaction: discord.Interaction) -> None:
        await reply(interaction, STALE_BUTTON, ephemeral=True)


# --- slash commands --------------------------------------------------------------------


@app_commands.command(name="start", description="What this bot does, and its commands")
async def start_command(interaction: discord.Interaction) -> None:
    await reply(interaction, HELP_TEXT)


@app_commands.command(name="help", description="What this bot does, and its commands")
async def help_command(interaction: discord.Interaction) -> None:
    await reply(interaction, HELP_TEXT)


@app_commands.command(name="subscribe", description="Follow an arXiv topic in this channel (admins)")
@app_commands.default_permissions(manage_channels=True)
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
@app_commands.default_permissions(manage_channels=True)
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
    await followup(interaction, **paper_message(result.summary, result.images, bot.c.buttons))


@app_commands.command(name="settings", description="Show this channel's settings; admins change one")
@app_commands.default_permissions(manage_channels=True)
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
    await interaction.response.defer(thinking=True)
    bot = bot_of(interaction)
    chat = await registered_chat(interaction)
    async with bot.service.posting_digest(chat) as post:  # UserError: posted in this channel already
        result = await bot.service.digest(chat, f"discord:{interaction.user.id}")
        if result.day is None or not (result.summaries or result.left_out):
            await reply(interaction, "No new papers match this channel's topics today. See /topics.")
            return
        await reply(interaction, header_text("Today's papers", result.day, len(result.summaries) + result.left_out))
        post.posted = str(interaction.id)
        for s in result.summaries:
            await followup(interaction, **paper_message(s, [Path(p) for p in s.images], bot.c.buttons))
        if result.left_out:
            await reply(interaction, quota_note(result.left_out, result.retry_minutes, bot.c.settings.summary_quota))
        post.complete = not result.left_out


@app_commands.command(name="ask", description="Ask one arXiv paper a question; the answer quotes the paper")
@app_commands.rename(paper_id="id")
@app_commands.describe(
    paper_id="2405.01872, arXiv:2405.01872v2, an arxiv.org link or hep-th/9901001",
    question="e.g. Which datasets do they evaluate on?",
)
async def ask_command(interaction: discord.Interaction, paper_id: str, question: str) -> None:
    await interaction.response.defer(thinking=True)
    bot = bot_of(interaction)
    chat = await registered_chat(interaction)
    answer = await bot.service.ask(paper_id, question, chat.language, user_key=f"discord:{interaction.user.id}")
    # The first followup replaces the "thinking…" reply to the command; the rest follow it.
    for chunk in answer_chunks(answer):
        await followup(interaction, chunk)


COMMANDS: list[app_commands.Command[Any, Any, Any]] = [
    start_command, help_command, subscribe_command, unsubscribe_command, topics_command,
    summary_command, settings_command, digest_command, ask_command,
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

    def __init__(self, client: discord.Client, buttons: ButtonSigner) -> None:
        self.client = client
        self.buttons = buttons

    async def send_header(self, chat: Chat, title: str, day: date, count: int) -> None:
        await self._send(chat, content=header_text(title, day, count))

    async def send_paper(
        self, chat: Chat, summary: Summary, images: list[Path], why: Sequence[MatchReason] | None = None
    ) -> None:
        await self._send(chat, **paper_message(summary, images, self.buttons, why or ()))

    async def send_paper_list(self, chat: Chat, papers: list[Paper]) -> None:
        text = labels_for(chat.language).more_papers + "\n" + "\n".join(f"• {paper_line(p)}" for p in papers)
        sent: list[str] = []
        for chunk in split_text(text):
            try:
                await self._send(chat, content=chunk)
            except Exception as exc:
                if sent:  # the messages before this one are in the channel: not to be sent again
                    raise PartlySent(sent, exc) from exc
                raise
            sent += [p.arxiv_id for p in papers if f"<{p.abs_url}>" in chunk]

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
    return DiscordSender(client, c.buttons), _stop(client, gateway)


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
        yield DiscordSender(client, c.buttons)
    finally:
        await client.close()


def _log_gateway_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("Discord gateway stopped: %s", task.exception())


async def _stop(client: discord.Client, gateway: asyncio.Task[None]) -> None:
    await client.close()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(gateway, 10)
