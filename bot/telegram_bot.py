"""Telegram: chat commands over long polling, and the Sender for the daily push.

The chat commands are the Service's; this module only turns updates into Service calls and
results into HTML messages. Private chats, groups, supergroups (forum topics included) and
channels all work: in groups only admins change topics and settings, and in channels, where
commands arrive as posts without a sender, whoever can post counts as an admin. The "Full
breakdown" button keeps what it needs in its callback data, signed (bot.buttons), so it works
after a restart and cannot be forged; in shared chats it posts the breakdown once per post.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from html import escape
from pathlib import Path
from typing import Any

from telegram import (
    Bot,
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    LinkPreviewOptions,
    Message,
    MessageOriginChannel,
    ReplyParameters,
    Update,
)
from telegram import Chat as TgChat
from telegram.constants import ChatAction, ChatMemberStatus, ChatType, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    BaseRateLimiter,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.app import Components
from bot.ask import Answer
from bot.background import running
from bot.buttons import LEGACY_PREFIX, PREFIX, BreakdownRef, ButtonSigner, claim_kept
from bot.config import Settings
from bot.logs import RedactingFilter
from bot.models import Chat, ChatKind, MatchReason, Paper, Platform, Summary
from bot.render.card import clip
from bot.render.labels import labels_for
from bot.render.telegram import (
    answer_html,
    breakdown_messages,
    card_html,
    compact_list_html,
    digest_header_html,
    split_html,
)
from bot.sender import (
    ChatGone,
    ChatMoved,
    PartlySent,
    PermanentSendError,
    TransientSendError,
)
from bot.service import HELP_TEXT, Service, UserError, quota_note
from bot.store import Store
from bot.store.posts import PostRef
from bot.validate import clean

log = logging.getLogger(__name__)

COMMANDS = [
    ("start", "What this bot does"),
    ("help", "Commands and examples"),
    ("subscribe", "Follow an arXiv topic: /subscribe cat:cs.CV AND ti:diffusion"),
    ("unsubscribe", "Stop following topics: /unsubscribe ID|QUERY|all"),
    ("topics", "This chat's topics with their ids"),
    ("summary", "Summarize one paper: /summary 2405.01872"),
    ("settings", "Show or change language, time, timezone, max"),
    ("digest", "Today's matches for this chat, now"),
    ("ask", "Ask a paper a question: /ask 2405.01872 Which datasets?"),
]
ADMIN_ONLY = (
    "Only admins of this group can change its topics and settings. "
    "Anyone can use /topics, /summary, /digest and /settings without arguments."
)
FAILED = "Sorry, something went wrong on our side; please try again later."
ADMIN_CACHE_SECONDS = 60.0
MAX_PHOTOS = 10  # a media group's maximum
MAX_PHOTO_BYTES = 10 * 2**20  # Telegram's limit for photos
TYPING_EVERY = 4.5  # Telegram shows "typing…" for 5 s
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
# Breakdown buttons, signed or (from earlier versions) not; the handler checks the signature.
_BREAKDOWN = re.compile(rf"^(?:{PREFIX}|{re.escape(LEGACY_PREFIX)})")
ANSWER_LIMIT = 200  # characters of an answerCallbackQuery text
BUTTON_KIND = "breakdown"
STALE_BUTTON = "This button is out of date. Ask again with /summary and the paper's id, e.g. /summary 2405.01872"
ALREADY_POSTED = "The full breakdown is already in this chat: it is the reply to this post."
BEING_POSTED = "The full breakdown is on its way to this chat."
UNKNOWN_COMMAND = "I don't know {command}. Send /help for the commands and examples."


# --- sending (shared by the commands and the push) ------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where messages go: a chat and, in a forum supergroup, the topic thread."""

    chat_id: int | str
    thread_id: int | None = None


def tg_chat_id(chat: Chat) -> int | str:
    return int(chat.chat_id) if chat.chat_id.lstrip("-").isdigit() else chat.chat_id


async def say(bot: Bot, to: Target, html: str) -> Message:
    """Send HTML, cut into as many messages as the limit needs; return the last one."""
    sent: Message | None = None
    for piece in split_html(html):
        sent = await bot.send_message(
            to.chat_id, piece, parse_mode=ParseMode.HTML, message_thread_id=to.thread_id,
            link_preview_options=NO_PREVIEW,
        )
    assert sent is not None, "say() needs a non-empty text"
    return sent


def breakdown_data(summary: Summary, buttons: ButtonSigner) -> str:
    """Signed callback data (at most 64 bytes; a long language name is then taken from the chat)."""
    p = summary.paper
    return buttons.breakdown(p.arxiv_id, p.version, summary.language)


def paper_keyboard(summary: Summary, buttons: ButtonSigner) -> InlineKeyboardMarkup:
    p = summary.paper
    data = breakdown_data(summary, buttons)
    row = [InlineKeyboardButton(labels_for(summary.language).full_breakdown, callback_data=data)]
    if p.pdf_url:
        row.append(InlineKeyboardButton("PDF", url=p.pdf_url))
    row.append(InlineKeyboardButton("arXiv", url=p.abs_url))
    return InlineKeyboardMarkup([row])


async def send_paper(
    bot: Bot,
    to: Target,
    summary: Summary,
    images: Sequence[Path],
    placeholder: Message | None = None,
    why: Sequence[MatchReason] = (),
    *,
    buttons: ButtonSigner,
) -> list[int]:
    """A paper's post: the card with its buttons (in place of `placeholder` if given), then its figures.

    Returns the ids of the post's messages (card first), which a reply to any of them names.
    """
    text, markup = card_html(summary, why), paper_keyboard(summary, buttons)
    if placeholder is not None:
        await bot.edit_message_text(
            text, chat_id=placeholder.chat_id, message_id=placeholder.message_id, parse_mode=ParseMode.HTML,
            reply_markup=markup, link_preview_options=NO_PREVIEW,
        )
        card_id = placeholder.message_id
    else:
        card = await bot.send_message(
            to.chat_id, text, parse_mode=ParseMode.HTML, reply_markup=markup, message_thread_id=to.thread_id,
            link_preview_options=NO_PREVIEW,
        )
        card_id = card.message_id
    usable = [p for p in images if p.is_file() and 0 < p.stat().st_size <= MAX_PHOTO_BYTES][:MAX_PHOTOS]
    photos = [p.read_bytes() for p in usable]
    # The figures answer the card, so they stay tied to their paper in a long digest.
    reply = ReplyParameters(card_id, allow_sending_without_reply=True)
    ids = [card_id]
    try:
        if len(photos) == 1:
            photo = await bot.send_photo(to.chat_id, photos[0], message_thread_id=to.thread_id, reply_parameters=reply)
            ids.append(photo.message_id)
        elif photos:
            media = [InputMediaPhoto(data, filename=f"figure{i}.jpg") for i, data in enumerate(photos, 1)]
            album = await bot.send_media_group(
                to.chat_id, media, message_thread_id=to.thread_id, reply_parameters=reply
            )
            ids += [m.message_id for m in album]
    except (Forbidden, ChatMigrated):
        raise
    except TelegramError as exc:
        # The card is out: figures that are refused (size, proportions) or lost to a timeout or
        # flood limit must not make the post fail, or the next push would send the card again.
        log.warning("figures of %s not sent: %s", summary.paper.versioned_id, exc.message)
    return ids


async def remember_post(
    store: Store | None, chat_id: int | str, ids: Sequence[int], summary: Summary | Answer
) -> None:
    """Keep which paper these messages show, so a reply to any of them is a question about it.

    The messages are out by then: a store that refuses is logged, never raised, or the push would
    count the post as failed and send it again (replies to it then go unanswered, nothing worse).
    """
    if store is not None and ids:
        p = summary.paper
        try:
            await store.add_post_messages(
                Platform.TELEGRAM, str(chat_id), ids, p.arxiv_id, p.version, summary.language
            )
        except Exception as exc:  # noqa: BLE001 - see above
            log.warning("messages of the post of %s in %s not kept: %s", p.versioned_id, chat_id, exc)


async def reply_html(bot: Bot, question: Message, pieces: Sequence[str]) -> list[Message]:
    """Messages that reply to `question`, in its forum topic if it is in one."""
    to = target_of(question)
    reply = ReplyParameters(question.message_id, allow_sending_without_reply=True)
    return [
        await bot.send_message(
            to.chat_id, piece, parse_mode=ParseMode.HTML, message_thread_id=to.thread_id,
            link_preview_options=NO_PREVIEW, reply_parameters=reply,
        )
        for piece in pieces
    ]


def error_html(message: str) -> str:
    """A UserError for the chat: its first line as text, the rest (a query with a caret under
    the failing place) preformatted so the caret stays in its column."""
    first, _, rest = message.partition("\n")
    return escape(first) + (f"\n<pre>{escape(rest)}</pre>" if rest.strip() else "")


def paper_line(p: Paper) -> str:
    return f'• <a href="{escape(p.abs_url)}">{escape(clip(p.title, 300))}</a>'


# --- the push ----------------------------------------------------------------------------------


class TelegramSender:
    """bot.sender.Sender for Telegram: blocked and migrated chats become ChatGone and ChatMoved,
    which the core's delivery turns into a switched-off or moved chat; a refused message
    (400, e.g. "not enough rights") becomes PermanentSendError and a timeout, network error,
    5xx or a flood limit the rate limiter gave up on becomes TransientSendError."""

    platform = Platform.TELEGRAM

    def __init__(self, bot: Bot, buttons: ButtonSigner, store: Store | None = None) -> None:
        self.bot = bot
        self.buttons = buttons
        self.store = store  # where the posts' message ids are kept, for replies to them

    async def send_header(self, chat: Chat, title: str, day: date, count: int) -> None:
        async with self._guard(chat):
            await say(self.bot, Target(tg_chat_id(chat)), digest_header_html(title, day, count))

    async def send_paper(
        self, chat: Chat, summary: Summary, images: list[Path], why: Sequence[MatchReason] | None = None
    ) -> None:
        async with self._guard(chat):
            ids = await send_paper(self.bot, Target(tg_chat_id(chat)), summary, images, why=why or (), buttons=self.buttons)
        await remember_post(self.store, chat.chat_id, ids, summary)

    async def send_paper_list(self, chat: Chat, papers: list[Paper]) -> None:
        sent: list[str] = []
        for piece in compact_list_html(papers, labels_for(chat.language).more_papers):
            try:
                async with self._guard(chat):
                    await say(self.bot, Target(tg_chat_id(chat)), piece)
            except Exception as exc:
                if sent:  # the messages before this one are in the chat: not to be sent again
                    raise PartlySent(sent, exc) from exc
                raise
            sent += [p.arxiv_id for p in papers if f'href="{escape(p.abs_url)}"' in piece]

    @contextlib.asynccontextmanager
    async def _guard(self, chat: Chat) -> AsyncIterator[None]:
        try:
            yield
        except Forbidden as exc:
            raise ChatGone(f"Telegram chat {chat.chat_id}: {exc.message}") from None
        except ChatMigrated as exc:
            raise ChatMoved(str(exc.new_chat_id)) from None
        except BadRequest as exc:  # before NetworkError: PTB derives BadRequest from it
            raise PermanentSendError(f"Telegram refused the message: {exc.message}") from None
        except (NetworkError, RetryAfter) as exc:
            raise TransientSendError(f"Telegram: {type(exc).__name__}: {exc.message}") from None


# Methods that post a message to a chat: one a second per chat (Telegram's Bot API FAQ).
_POSTING = {"sendMessage", "sendPhoto", "sendMediaGroup", "sendDocument", "copyMessage", "forwardMessage"}


class PacedRateLimiter(BaseRateLimiter[int]):
    """A Bot API rate limiter paced to Telegram's published limits without bursts: at most 30
    messages in any second overall, one a second per chat, 20 a minute per group; a RetryAfter
    pauses every request for its time, and the request is tried again (up to `max_retries`).

    AIORateLimiter's leaky buckets let a full bucket through at once (up to 60 messages in the
    first second of a push), do not space a private chat's messages at all, and after a RetryAfter
    release every request that had taken its slot during the pause at once, which earns the next
    429. Here every send reserves its own time: a chat's next message is due a little over a second
    after its previous one was answered, a group's 3 s after its previous one, and any message 1/28 s
    after the previous one; a request whose slot fell in a pause takes a new one after it. `scale`
    multiplies the limits (for benchmarks against a fake with scaled limits only).
    """

    def __init__(self, *, max_retries: int = 3, scale: float = 1.0, margin: float = 0.94) -> None:
        self._max_retries = max_retries
        self._gap = 1 / (30 * scale * margin)
        self._group_gap = 60 / (20 * scale * margin)
        self._chat_gap = 1 / (scale * margin)
        self._next_any = 0.0  # loop time of the next free slot, any chat
        self._next_group: dict[int | str, float] = {}
        self._next_chat: dict[int | str, float] = {}
        self._chat_locks: dict[int | str, asyncio.Lock] = {}
        self._paused_until = 0.0

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to tear down."""

    async def process_request(
        self, callback: Any, args: Any, kwargs: dict[str, Any], endpoint: str, data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        chat_id = data.get("chat_id")
        if chat_id is None:
            return await callback(*args, **kwargs)
        with contextlib.suppress(ValueError, TypeError):
            chat_id = int(chat_id)
        posting = endpoint in _POSTING
        lock = self._chat_locks.setdefault(chat_id, asyncio.Lock()) if posting else contextlib.nullcontext()
        loop = asyncio.get_running_loop()
        try:
            async with lock:
                for attempt in range((rate_limit_args or self._max_retries) + 1):
                    await self._slot(chat_id, posting)
                    try:
                        return await callback(*args, **kwargs)
                    except RetryAfter as exc:
                        wait = getattr(exc, "_retry_after", None)
                        seconds = wait.total_seconds() if hasattr(wait, "total_seconds") else float(wait or 1)
                        # Paused also when this request gives up: the other sends must still wait.
                        self._paused_until = max(self._paused_until, loop.time() + seconds + 0.1)
                        log.info("Telegram asked to wait %.0f s; every send waits", seconds)
                        if attempt == (rate_limit_args or self._max_retries):
                            raise
                    finally:
                        if posting:
                            self._next_chat[chat_id] = loop.time() + self._chat_gap
        finally:
            if posting and len(self._chat_locks) > 4096:  # forget idle chats
                now = loop.time()
                for key in [k for k, t in self._next_chat.items() if t < now and not self._chat_locks[k].locked()]:
                    self._next_chat.pop(key, None)
                    self._chat_locks.pop(key, None)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _slot(self, chat_id: int | str, posting: bool) -> None:
        """Wait for this request's time: after any pause, its chat's and group's spacing, and the overall one."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            ready = max(self._paused_until, self._next_chat.get(chat_id, 0.0) if posting else 0.0)
            if ready > now:
                await asyncio.sleep(ready - now)
                continue
            at = now
            if isinstance(chat_id, str) or chat_id < 0:  # groups, supergroups and channels
                at = max(at, self._next_group.get(chat_id, 0.0))
                self._next_group[chat_id] = at + self._group_gap
            at = max(at, self._next_any)
            self._next_any = at + self._gap
            if at > now:
                await asyncio.sleep(at - now)
            if loop.time() >= self._paused_until:
                return
            # A RetryAfter came while this request waited: its slot is gone; take one after the pause.


@contextlib.asynccontextmanager
async def push_bot(
    settings: Settings, *, max_retries: int = 3, rate_limiter: PacedRateLimiter | None = None
) -> AsyncIterator[Bot]:
    """The Bot API client `paperbot push` sends with: ExtBot with the rate limiter, as in `run`,
    so a RetryAfter is waited out, not a failure."""
    from telegram.ext import ExtBot
    from telegram.request import HTTPXRequest

    assert settings.telegram_bot_token is not None
    base = settings.telegram_api_base_url
    bot = ExtBot(
        settings.telegram_bot_token.get_secret_value(),
        base_url=f"{base}/bot",
        base_file_url=f"{base}/file/bot",
        rate_limiter=rate_limiter or PacedRateLimiter(max_retries=max_retries),
        # As in `run`: a media group of four figures takes longer than the 5 s default.
        request=HTTPXRequest(read_timeout=20, media_write_timeout=60),
    )
    try:
        await bot.initialize()  # getMe
    except InvalidToken:
        # PTB's message repeats the token; this one says what to fix.
        with contextlib.suppress(Exception):
            await bot.shutdown()
        raise UserError("Telegram rejected TELEGRAM_BOT_TOKEN (401 Unauthorized); check the token with @BotFather.", 1) from None
    async with bot:
        yield bot


# --- the commands ------------------------------------------------------------------------------


@dataclass
class Request:
    """One command: the chat as stored, where to answer, who asked, and the text after the command."""

    chat: Chat
    to: Target
    message: Message
    user_key: str
    arg: str


Command = Callable[["TelegramBot", Bot, Request], Awaitable[None]]


def chat_of(tg: TgChat) -> Chat:
    title = tg.title or tg.full_name or tg.username or ""
    return Chat(Platform.TELEGRAM, str(tg.id), ChatKind(tg.type), title)


def target_of(message: Message) -> Target:
    # message_thread_id is also set on replies in plain groups; only forum topics are threads to post in.
    return Target(message.chat_id, message.message_thread_id if message.is_topic_message else None)


class TelegramBot:
    """The handlers, with the Service and a short-lived cache of group admins."""

    def __init__(self, c: Components) -> None:
        self.c = c
        self.service = Service(c)
        self._admins: dict[tuple[int, int], tuple[float, bool]] = {}
        token = c.settings.telegram_bot_token
        self._redactor = RedactingFilter([token.get_secret_value()] if token else [])

    def add_handlers(self, app: Application) -> None:  # type: ignore[type-arg]
        # Channel posts have no sender and are not messages to CommandHandler's default filter. A
        # channel's posts also reach its discussion group as automatic forwards: answered once, in the channel.
        scope = (filters.UpdateType.MESSAGE | filters.UpdateType.CHANNEL_POST) & ~filters.IS_AUTOMATIC_FORWARD
        commands: dict[str, Command] = {
            "start": TelegramBot.cmd_help, "help": TelegramBot.cmd_help,
            "subscribe": TelegramBot.cmd_subscribe, "unsubscribe": TelegramBot.cmd_unsubscribe,
            "topics": TelegramBot.cmd_topics, "summary": TelegramBot.cmd_summary,
            "settings": TelegramBot.cmd_settings, "digest": TelegramBot.cmd_digest,
            "ask": TelegramBot.cmd_ask,
        }
        for name, command in commands.items():
            app.add_handler(CommandHandler(name, self._runner(name, command), filters=scope))
        # Commands written as a photo's (or file's) caption, which CommandHandler does not read.
        self._commands = commands
        app.add_handler(MessageHandler(scope & filters.CaptionRegex(r"^/[A-Za-z0-9_]"), self.on_caption_command))
        app.add_handler(MessageHandler(scope & filters.COMMAND, self.on_unknown_command))
        # A reply (not a command) to a message of a paper's post is a question about that paper.
        app.add_handler(MessageHandler(scope & filters.REPLY & filters.TEXT & ~filters.COMMAND, self.on_reply))
        app.add_handler(CallbackQueryHandler(self.on_breakdown, pattern=_BREAKDOWN))
        # Keep this last among the callback handlers: data no button of ours carries gets an answer too.
        app.add_handler(CallbackQueryHandler(self.on_unknown_button))
        app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self.on_migrate))
        app.add_handler(ChatMemberHandler(self.on_my_member, ChatMemberHandler.MY_CHAT_MEMBER))
        app.add_error_handler(self.on_error)

    def _runner(self, name: str, command: Command) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[None]]:
        async def run(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            self.c.metrics.request(Platform.TELEGRAM, name)
            message = update.effective_message
            assert message is not None
            chat = await self.service.register_chat(chat_of(message.chat))
            # Anonymous admins and channels speak as a chat; their quota is that chat's.
            who = message.sender_chat or message.from_user or message.chat
            parts = (message.text or message.caption or "").split(maxsplit=1)
            arg = parts[1] if len(parts) > 1 else ""
            request = Request(chat, target_of(message), message, f"telegram:{who.id}", arg)
            try:
                await command(self, context.bot, request)
            except UserError as exc:
                await say(context.bot, request.to, error_html(str(exc)))

        return run

    async def is_admin(self, bot: Bot, message: Message) -> bool:
        chat = message.chat
        if chat.type in (ChatType.PRIVATE, ChatType.CHANNEL):
            return True  # in a channel, whoever can post is an admin
        if message.sender_chat is not None:
            # The anonymous admin writes as the group itself; a user writing as a channel is not an admin.
            return message.sender_chat.id == chat.id
        if message.from_user is None:
            return False
        key, now = (chat.id, message.from_user.id), time.monotonic()
        cached = self._admins.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        member = await bot.get_chat_member(chat.id, message.from_user.id)
        admin = member.status in (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)
        if len(self._admins) > 10_000:
            self._admins = {k: v for k, v in self._admins.items() if v[0] > now}
        self._admins[key] = (now + ADMIN_CACHE_SECONDS, admin)
        return admin

    async def _require_admin(self, bot: Bot, r: Request) -> None:
        if not await self.is_admin(bot, r.message):
            raise UserError(ADMIN_ONLY)

    async def cmd_help(self, bot: Bot, r: Request) -> None:
        await say(bot, r.to, escape(HELP_TEXT))

    async def cmd_subscribe(self, bot: Bot, r: Request) -> None:
        await self._require_admin(bot, r)
        result = await self.service.subscribe(r.chat, r.arg)
        t = result.topic
        head = "Subscribed" if result.created else "Already subscribed"
        lines = [f"{head}: topic #{t.id} <code>{escape(t.query)}</code>"]
        if result.preview:
            lines += ["", "Recent matches:", *(paper_line(p) for p in result.preview)]
        elif result.preview_error:
            lines.append(f"({escape(result.preview_error)})")
        else:
            lines.append("No recent papers match yet; new ones will come with the daily push.")
        lines += ["", f"Remove it with /unsubscribe {t.id}."]
        await say(bot, r.to, "\n".join(lines))

    async def cmd_unsubscribe(self, bot: Bot, r: Request) -> None:
        await self._require_admin(bot, r)
        removed = await self.service.unsubscribe(r.chat, r.arg)
        if not removed:
            await say(bot, r.to, "This chat has no topics.")
            return
        await say(bot, r.to, "Removed:\n" + "\n".join(f"#{t.id} <code>{escape(t.query)}</code>" for t in removed))

    async def cmd_topics(self, bot: Bot, r: Request) -> None:
        topics = await self.service.topics(r.chat)
        if not topics:
            await say(bot, r.to, "No topics yet. Add one with /subscribe, e.g. /subscribe cat:cs.CV AND ti:diffusion")
            return
        await say(bot, r.to, "Topics:\n" + "\n".join(f"#{t.id} <code>{escape(t.query)}</code>" for t in topics))

    async def cmd_settings(self, bot: Bot, r: Request) -> None:
        chat = r.chat
        if r.arg.strip():
            await self._require_admin(bot, r)
            chat = await self.service.change_setting(chat, r.arg.split())
        head = "Settings changed." if r.arg.strip() else "Settings of this chat:"
        lines = [f"<b>{escape(k)}</b>: {escape(v)}" for k, v in self.service.describe_settings(chat)]
        hint = "Change one with /settings name value, e.g. /settings time 08:30"
        await say(bot, r.to, "\n".join([head, *lines, hint]))

    async def cmd_digest(self, bot: Bot, r: Request) -> None:
        async with self.service.posting_digest(r.chat) as post:  # UserError: posted here already
            async with typing(bot, r.to):
                result = await self.service.digest(r.chat, r.user_key)
            if result.day is None or not (result.summaries or result.left_out):
                await say(bot, r.to, "No new papers match this chat's topics today. See /topics.")
                return
            count = len(result.summaries) + result.left_out
            header = await say(bot, r.to, digest_header_html("Today's papers", result.day, count))
            post.posted = str(header.message_id)
            for s in result.summaries:
                ids = await send_paper(bot, r.to, s, [Path(p) for p in s.images], buttons=self.c.buttons)
                await remember_post(self.c.store, r.to.chat_id, ids, s)
            if result.left_out:
                note = quota_note(result.left_out, result.retry_minutes, self.c.settings.summary_quota)
                await say(bot, r.to, escape(note))
            post.complete = not result.left_out

    async def cmd_summary(self, bot: Bot, r: Request) -> None:
        id_text = r.arg.strip()
        if not id_text:
            raise UserError("Give a paper id, e.g. /summary 2405.01872 or /summary https://arxiv.org/abs/2405.01872")
        async with typing(bot, r.to):
            placeholder = await say(bot, r.to, f"Summarizing {escape(clip(clean(id_text), 200))}…")
            try:
                result = await self.service.summarize(id_text, r.chat.language, user_key=r.user_key)
            except UserError as exc:
                await self._edit(bot, placeholder, error_html(str(exc)))
                return
            except Exception as exc:  # noqa: BLE001 - the placeholder must not promise work forever
                self._log_failure("/summary", exc)
                await self._edit(bot, placeholder, escape(FAILED))
                return
            ids = await send_paper(bot, r.to, result.summary, result.images, placeholder=placeholder, buttons=self.c.buttons)
            await remember_post(self.c.store, r.to.chat_id, ids, result.summary)

    async def cmd_ask(self, bot: Bot, r: Request) -> None:
        replied = await self._post_replied_to(r.message)
        words = r.arg.split(maxsplit=1)
        if replied is not None and not (words and self.service.names_a_paper(words[0])):
            # /ask as a reply to a paper's post, without another paper's id: a question about that post.
            post, chat = replied
            await self._answer(bot, r.message, chat, post.versioned_id, r.arg, r.user_key)
            return
        try:
            id_text, question = self.service.parse_ask(r.arg)
        except UserError as exc:
            await reply_html(bot, r.message, split_html(error_html(str(exc))))
            return
        await self._answer(bot, r.message, r.chat, id_text, question, r.user_key)

    async def _post_replied_to(self, message: Message) -> tuple[PostRef, Chat] | None:
        """The paper's post that `message` replies to (any of its messages), with the chat to answer
        as; None when it replies to something else or to nothing."""
        replied = message.reply_to_message
        if replied is None:
            return None
        post = await self.c.store.post_of_message(Platform.TELEGRAM, str(message.chat_id), replied.message_id)
        origin = replied.forward_origin
        via_channel = False
        if post is None and replied.is_automatic_forward and isinstance(origin, MessageOriginChannel):
            # A comment in a channel's discussion group: it replies to the copy of the channel's post
            # that Telegram forwarded there; the original names the post.
            post = await self.c.store.post_of_message(Platform.TELEGRAM, str(origin.chat.id), origin.message_id)
            via_channel = True
        if post is None:
            return None
        chat = await self.service.register_chat(chat_of(message.chat))
        if via_channel:  # answered in the language the channel's post was written in
            chat = dataclasses.replace(chat, language=post.language)
        return post, chat

    async def on_reply(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A reply to any message of a paper's post (card, photo, album, breakdown): a question about it."""
        message = update.effective_message
        if message is None or not (message.text or "").strip():
            return
        replied = await self._post_replied_to(message)
        if replied is None:
            return  # a reply to something else: not ours to answer
        post, chat = replied
        who = message.sender_chat or message.from_user or message.chat
        await self._answer(context.bot, message, chat, post.versioned_id, message.text or "", f"telegram:{who.id}")

    async def _answer(self, bot: Bot, question: Message, chat: Chat, id_text: str, text: str, user_key: str) -> None:
        """The answer to a question about a paper, as replies to the question."""
        async with typing(bot, target_of(question)):
            try:
                answer = await self.service.ask(id_text, text, chat.language, user_key=user_key)
            except UserError as exc:
                await reply_html(bot, question, split_html(error_html(str(exc))))
                return
            except Exception as exc:  # noqa: BLE001 - the asker must hear back, not wait forever
                self._log_failure("a question", exc)
                await reply_html(bot, question, [escape(FAILED)])
                return
            sent = await reply_html(bot, question, answer_html(answer))
        # A reply to the answer is a follow-up question about the same paper.
        await remember_post(self.c.store, question.chat_id, [m.message_id for m in sent], answer)

    @staticmethod
    async def _edit(bot: Bot, message: Message, html: str) -> None:
        await bot.edit_message_text(
            split_html(html)[0], chat_id=message.chat_id, message_id=message.message_id,
            parse_mode=ParseMode.HTML, link_preview_options=NO_PREVIEW,
        )

    # --- other updates -----------------------------------------------------------------------

    async def on_breakdown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A "Full breakdown" press: checked, then posted (once per post in shared chats).

        Forged, stale or already-served presses get a short answer and cost nothing. A press
        that needs a new summary is charged to the presser's quota first; a refused one is
        answered, not posted. Answers are best effort: a press handled after Telegram forgot
        it ("query is too old") still posts its breakdown.
        """
        query = update.callback_query
        assert query is not None
        ref = self.c.buttons.read(query.data)
        if ref is None or query.message is None:
            await self._answer_press(query, STALE_BUTTON)
            return
        self.c.metrics.request(Platform.TELEGRAM, "breakdown")
        tg = query.message.chat
        to = target_of(query.message) if isinstance(query.message, Message) else Target(tg.id)
        post = (str(tg.id), str(query.message.message_id))
        # In a private chat only the presser sees it, so each press may have it again.
        once = tg.type != ChatType.PRIVATE
        if once and not await self.c.store.claim_button_post(Platform.TELEGRAM, *post, BUTTON_KIND):
            state = await self.c.store.button_post(Platform.TELEGRAM, *post, BUTTON_KIND)
            await self._answer_press(query, ALREADY_POSTED if state and state["posted_id"] else BEING_POSTED)
            return
        posted: list[Message] = []

        async def first_out(message: Message) -> None:
            # Recorded as soon as the chat shows the start of it: a failure or a crash before the
            # last message must not let a later press post it again from the start (SPEC: at most once).
            posted.append(message)
            if once:
                await self.c.store.finish_button_post(Platform.TELEGRAM, *post, BUTTON_KIND, str(message.message_id))

        try:
            async with claim_kept(self.c.store, Platform.TELEGRAM, *post, BUTTON_KIND) if once else contextlib.nullcontext():
                chat = await self.service.register_chat(chat_of(tg))
                await self._post_breakdown(context.bot, query, ref, chat.language, to, first_out)
        finally:
            if once and not posted:
                await self.c.store.release_button_post(Platform.TELEGRAM, *post, BUTTON_KIND)

    async def _post_breakdown(
        self, bot: Bot, query: CallbackQuery, ref: BreakdownRef, chat_language: str, to: Target,
        first_out: Callable[[Message], Awaitable[None]],
    ) -> Message | None:
        """Answer the press and post the breakdown as a reply to the post; the first message (also
        given to `first_out` as soon as it is sent), or None when nothing was posted (the press was
        answered with the reason)."""
        assert query.message is not None
        language = ref.language or chat_language
        try:
            summary = await self.service.cached_breakdown(ref.versioned_id, language)
            if summary is None:
                await self.service.charge_quota(f"telegram:{query.from_user.id}")
        except UserError as exc:
            await self._answer_press(query, str(exc), alert=True)
            return None
        await self._answer_press(query)
        if summary is None:
            async with typing(bot, to):
                summary = (await self.service.summarize(ref.versioned_id, language, with_images=False)).summary
        reply: ReplyParameters | None = ReplyParameters(query.message.message_id, allow_sending_without_reply=True)
        sent: list[Message] = []
        for piece in breakdown_messages(summary):
            try:
                sent.append(await bot.send_message(
                    to.chat_id, piece, parse_mode=ParseMode.HTML, message_thread_id=to.thread_id,
                    link_preview_options=NO_PREVIEW, reply_parameters=None if sent else reply,
                ))
            except ChatMigrated as exc:
                if sent:
                    raise
                # A post from before its group became a supergroup: the breakdown goes to the
                # supergroup, whose messages have other ids (a reply to the post's id would answer
                # some other message there).
                await self.c.store.migrate_chat(Platform.TELEGRAM, str(to.chat_id), str(exc.new_chat_id))
                to, reply = Target(exc.new_chat_id), None
                sent.append(await bot.send_message(
                    to.chat_id, piece, parse_mode=ParseMode.HTML, link_preview_options=NO_PREVIEW,
                ))
            if len(sent) == 1:
                await first_out(sent[0])
        await remember_post(self.c.store, to.chat_id, [m.message_id for m in sent], summary)
        return sent[0] if sent else None

    async def _answer_press(self, query: CallbackQuery, text: str | None = None, *, alert: bool = False) -> None:
        """answerCallbackQuery, best effort: a late or failed answer is logged and the work goes on."""
        try:
            await query.answer(clip(text, ANSWER_LIMIT) if text else None, show_alert=alert and bool(text))
        except TelegramError as exc:
            log.warning("could not answer a button press (%s); going on", self._redactor.redact(exc.message))

    async def on_unknown_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Callback data that no button of ours carries (a modified client, an old bot's button)."""
        assert update.callback_query is not None
        await self._answer_press(update.callback_query, STALE_BUTTON)

    def _addressed(self, bot: Bot, word: str) -> tuple[str, bool]:
        """`/name@bot` -> (name, whether it names us or no bot at all)."""
        name, _, username = word[1:].partition("@")
        return name.lower(), not username or username.lower() == (bot.username or "").lower()

    async def on_caption_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A command as a caption: run like the same command as a text message."""
        message = update.effective_message
        assert message is not None and message.caption is not None
        name, ours = self._addressed(context.bot, message.caption.split(maxsplit=1)[0])
        if not ours:
            return
        command = self._commands.get(name)
        if command is None:
            await self.on_unknown_command(update, context)
            return
        await self._runner(name, command)(update, context)

    async def on_unknown_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A command we do not have: a hint in private chats, or in shared chats when it names us
        (`/foo` alone in a group is likely for another bot)."""
        message = update.effective_message
        assert message is not None
        word = (message.text or message.caption or "").split(maxsplit=1)[0]
        name, ours = self._addressed(context.bot, word)
        if not ours or (message.chat.type != ChatType.PRIVATE and "@" not in word):
            return
        shown = clip("/" + name, 40)
        await say(context.bot, target_of(message), escape(UNKNOWN_COMMAND.format(command=shown)))

    async def on_migrate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A group became a supergroup: its topics and settings move to the new id."""
        m = update.effective_message
        assert m is not None
        if m.migrate_to_chat_id:
            old, new = m.chat_id, m.migrate_to_chat_id
        elif m.migrate_from_chat_id:
            old, new = m.migrate_from_chat_id, m.chat_id
        else:
            return
        await self.c.store.migrate_chat(Platform.TELEGRAM, str(old), str(new))
        log.info("Telegram chat %s migrated to %s", old, new)

    async def on_my_member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The bot was blocked, kicked or added: switch the chat off or on."""
        change = update.my_chat_member
        assert change is not None
        if change.new_chat_member.status in (ChatMemberStatus.LEFT, ChatMemberStatus.BANNED):
            await self.c.store.set_chat_active(Platform.TELEGRAM, str(change.chat.id), False)
        else:
            await self.service.register_chat(chat_of(change.chat))

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error = context.error
        assert error is not None
        message = update.effective_message if isinstance(update, Update) else None
        chat = update.effective_chat if isinstance(update, Update) else None
        if isinstance(error, Forbidden) and chat is not None:
            await self.c.store.set_chat_active(Platform.TELEGRAM, str(chat.id), False)
            log.info("Telegram chat %s blocked or removed the bot; switched off", chat.id)
            return
        if isinstance(error, ChatMigrated) and chat is not None:
            await self.c.store.migrate_chat(Platform.TELEGRAM, str(chat.id), str(error.new_chat_id))
            return
        self._log_failure("Telegram update", error)
        if chat is not None:
            to = target_of(message) if message is not None else Target(chat.id)
            with contextlib.suppress(TelegramError):
                await say(context.bot, to, escape(FAILED))

    def _log_failure(self, what: str, error: BaseException) -> None:
        # Only the type and a redacted message at ERROR; the traceback, redacted, for debugging.
        log.error("%s failed: %s: %s", what, type(error).__name__, self._redactor.redact(str(error)))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s", self._redactor.redact("".join(traceback.format_exception(error))))


@contextlib.asynccontextmanager
async def typing(bot: Bot, to: Target) -> AsyncIterator[None]:
    """Show "typing…" in the chat until the block ends."""

    async def keep_typing() -> None:
        while True:
            with contextlib.suppress(TelegramError):
                await bot.send_chat_action(to.chat_id, ChatAction.TYPING, message_thread_id=to.thread_id)
            await asyncio.sleep(TYPING_EVERY)

    async with running(keep_typing):
        yield


# --- start -------------------------------------------------------------------------------------


async def set_commands(app: Application) -> None:  # type: ignore[type-arg]
    await app.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])


def build_application(c: Components) -> Application:  # type: ignore[type-arg]
    """The Application for long polling; call `post_init` (sets the command menu) after `initialize()`
    when not using `run_polling`."""
    token = c.settings.telegram_bot_token
    if token is None:
        raise UserError("Set TELEGRAM_BOT_TOKEN to run the Telegram bot.")
    api = c.settings.telegram_api_base_url
    app = (
        ApplicationBuilder()
        .token(token.get_secret_value())
        .base_url(f"{api}/bot")
        .base_file_url(f"{api}/file/bot")
        # Waits out flood limits and RetryAfter answers instead of failing the send.
        .rate_limiter(AIORateLimiter(max_retries=3))
        # A summary can take half a minute; other chats must not wait for it.
        .concurrent_updates(True)
        # Uploads of a paper's figures and their answers can take longer than PTB's 5 s defaults.
        .read_timeout(20)
        .media_write_timeout(60)
        .post_init(set_commands)
        .build()
    )
    TelegramBot(c).add_handlers(app)
    return app
