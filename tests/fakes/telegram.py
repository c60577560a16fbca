"""A fake Telegram Bot API on 127.0.0.1 for the real python-telegram-bot Application.

It answers `POST /bot{token}/{method}` with form, JSON or multipart bodies in the Bot API's JSON
shape (`{"ok": true, "result": ...}`) for the methods the bot uses, and checks what Telegram
checks on the way: HTML that Telegram could not parse (an unknown or unclosed tag, a bare `<`,
`>` or `&`) is refused with "can't parse entities", a text over 4096 or a caption over 1024
characters (after parsing, in UTF-16 units) with "message is too long", a media group outside
2..10 items, an edit that changes nothing with "message is not modified", inline-button
callback data over 64 bytes with BUTTON_DATA_INVALID, a callback answer over 200 characters.

Every call is in `.calls` (method, decoded params, uploaded file sizes); `.messages` holds the
current state of every message the bot sent. Knobs: `push_*` queue updates (messages, channel
posts, button clicks, group migrations), `set_member` gives a user a status in a chat,
`fail(...)` scripts Bot API errors per method and chat (`forbidden`, `migrated`, `retry_after`
build the usual ones), `wait_for` lets a test wait for a call. `setWebhook` keeps its url and secret in
`.webhook` (`deleteWebhook` clears it); while a webhook is set, getUpdates is refused with 409.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from html import unescape
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.server import ThreadedServer

# Token-shaped, so that the log redaction sees what it would see in production.
TOKEN = "987654321:AAFakeTokenForTestsOnly-abcdefghijklm"
BOT_ID = 987654321
BOT_USERNAME = "paperbot_test_bot"
ANONYMOUS_ADMIN = {"id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"}

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_DATA_BYTES = 64
ANSWER_TEXT_LIMIT = 200
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
_JSON_PARAMS = {
    "reply_markup", "media", "commands", "allowed_updates", "reply_parameters", "link_preview_options",
    "entities", "caption_entities", "scope",
}
_INT_PARAMS = {
    "chat_id", "message_id", "message_thread_id", "user_id", "offset", "limit", "timeout", "max_connections",
}
_ALLOWED_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "span",
    "tg-spoiler", "tg-emoji", "blockquote",
}
_TAG = re.compile(
    r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z-]+(?:\s*=\s*(?:\"[^\"<]*\"|'[^'<]*'|[^\s>\"'<]+))?)*)\s*>"
)
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|lt|gt|amp|quot);")


class BotApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters

    def response(self) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return web.json_response(body, status=self.status)


def _unparsable(why: str) -> BotApiError:
    return BotApiError(400, f"Bad Request: can't parse entities: {why}")


def parse_html(text: str) -> str:
    """Telegram's reading of an HTML-mode text: the plain text, or BotApiError as Telegram answers."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "<":
            m = _TAG.match(text, i)
            if not m:
                raise _unparsable(f"unsupported start tag at byte offset {i}")
            closing, name = m.group(1) == "/", m.group(2).lower()
            if name not in _ALLOWED_TAGS:
                raise _unparsable(f'unsupported start tag "{name}" at byte offset {i}')
            if closing:
                if not stack or stack[-1] != name:
                    raise _unparsable(f'can\'t find start tag for "{name}"')
                stack.pop()
            else:
                if name == "a" and "href=" not in m.group(3):
                    raise _unparsable("a tag without href")
                stack.append(name)
            i = m.end()
        elif ch == "&":
            m = _ENTITY.match(text, i)
            if not m:
                raise _unparsable(f"bare '&' at byte offset {i}")
            out.append(unescape(m.group(0)))
            i = m.end()
        elif ch == ">":
            raise _unparsable(f"bare '>' at byte offset {i}")
        else:
            out.append(ch)
            i += 1
    if stack:
        raise _unparsable(f'can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(out)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, int] = field(default_factory=dict)  # multipart part name -> size in bytes
    error: str | None = None  # the description when the fake refused the call
    result: Any = None  # what the fake answered

    @property
    def chat_id(self) -> Any:
        return self.params.get("chat_id")


@dataclass
class _Scripted:
    method: str  # "*" for every method
    chat_id: int | None  # None for every chat
    status: int
    description: str
    parameters: dict[str, Any] | None
    times: int | None  # None: for ever
    after: int = 0  # matching calls let through before the failures start


class FakeTelegram:
    def __init__(self, token: str = TOKEN, username: str = BOT_USERNAME, max_poll: float = 0.3) -> None:
        self.token, self.username, self.max_poll = token, username, max_poll
        self.calls: list[Call] = []
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.chats: dict[int, dict[str, Any]] = {}
        self.members: dict[tuple[int, int], str] = {}
        self._scripted: list[_Scripted] = []
        self.webhook: dict[str, Any] | None = None  # what setWebhook set: url, secret_token, max_connections
        self._updates: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._callback_ids = itertools.count(1)
        app = web.Application(client_max_size=60 * 2**20)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self.server = ThreadedServer(app)

    # --- running -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """What TELEGRAM_API_BASE_URL is set to."""
        return self.server.url

    def __enter__(self) -> FakeTelegram:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    # --- chats and members -------------------------------------------------------------------

    @staticmethod
    def user(user_id: int, first_name: str = "Ada", username: str | None = None) -> dict[str, Any]:
        u: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            u["username"] = username
        return u

    def private_chat(self, user: dict[str, Any]) -> dict[str, Any]:
        return self.add_chat({"id": user["id"], "type": "private", "first_name": user["first_name"]})

    def group(
        self, chat_id: int, title: str = "Group", kind: str = "supergroup", forum: bool = False
    ) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": chat_id, "type": kind, "title": title}
        if forum:
            chat["is_forum"] = True
        return self.add_chat(chat)

    def channel(self, chat_id: int, title: str = "Channel") -> dict[str, Any]:
        return self.add_chat({"id": chat_id, "type": "channel", "title": title})

    def add_chat(self, chat: dict[str, Any]) -> dict[str, Any]:
        self.chats[chat["id"]] = chat
        return chat

    def set_member(self, chat_id: int, user_id: int, status: str) -> None:
        """status: creator, administrator, member, restricted, left or kicked."""
        self.members[(chat_id, user_id)] = status

    # --- scripted errors ---------------------------------------------------------------------

    def fail(
        self,
        method: str,
        chat_id: int | None,
        status: int,
        description: str,
        parameters: dict[str, Any] | None = None,
        times: int | None = 1,
        after: int = 0,
    ) -> None:
        self._scripted.append(_Scripted(method, chat_id, status, description, parameters, times, after))

    def clear_failures(self) -> None:
        with self._lock:
            self._scripted.clear()

    def forbidden(self, chat_id: int, method: str = "*", times: int | None = None) -> None:
        self.fail(method, chat_id, 403, "Forbidden: bot was blocked by the user", times=times)

    def migrated(self, chat_id: int, new_chat_id: int, method: str = "*", times: int | None = None) -> None:
        self.fail(
            method, chat_id, 400, "Bad Request: group chat was upgraded to a supergroup chat",
            {"migrate_to_chat_id": new_chat_id}, times,
        )

    def retry_after(self, method: str, chat_id: int | None, seconds: int = 1, times: int = 1) -> None:
        self.fail(method, chat_id, 429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds}, times)

    def _scripted_error(self, method: str, chat_id: Any) -> BotApiError | None:
        with self._lock:
            for s in self._scripted:
                if s.method in (method, "*") and s.chat_id in (None, chat_id) and s.times != 0:
                    if s.after > 0:
                        s.after -= 1
                        continue
                    if s.times is not None:
                        s.times -= 1
                    return BotApiError(s.status, s.description, s.parameters)
        return None

    # --- updates -----------------------------------------------------------------------------

    def push(self, update: dict[str, Any]) -> int:
        with self._lock:
            update = {"update_id": next(self._update_ids), **update}
            self._updates.append(update)
        return int(update["update_id"])

    def new_message(
        self,
        chat: dict[str, Any],
        text: str | None,
        from_user: dict[str, Any] | None = None,
        *,
        sender_chat: dict[str, Any] | None = None,
        thread_id: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A Message object as Telegram sends it, with the bot_command entity of a leading /command."""
        msg: dict[str, Any] = {"message_id": next(self._message_ids), "date": int(time.time()), "chat": chat, **extra}
        if text is not None:
            msg["text"] = text
        if from_user is not None:
            msg["from"] = from_user
        if sender_chat is not None:
            msg["sender_chat"] = sender_chat
        if thread_id is not None:
            msg["message_thread_id"] = thread_id
            msg["is_topic_message"] = True
        if text and text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            msg["entities"] = [{"type": "bot_command", "offset": 0, "length": utf16_len(command)}]
        caption = extra.get("caption")
        if isinstance(caption, str) and caption.startswith("/"):
            command = caption.split(maxsplit=1)[0]
            msg["caption_entities"] = [{"type": "bot_command", "offset": 0, "length": utf16_len(command)}]
        return msg

    def push_photo(self, chat: dict[str, Any], caption: str, from_user: dict[str, Any] | None = None) -> int:
        """A photo with a caption (with its bot_command entity when the caption starts with one)."""
        photo = [{"file_id": "in-photo", "file_unique_id": "in-photo-u", "width": 90, "height": 90, "file_size": 900}]
        return self.push({"message": self.new_message(chat, None, from_user, photo=photo, caption=caption)})

    def push_message(
        self, chat: dict[str, Any], text: str, from_user: dict[str, Any] | None = None, **kw: Any
    ) -> int:
        return self.push({"message": self.new_message(chat, text, from_user, **kw)})

    def push_channel_post(self, chat: dict[str, Any], text: str) -> int:
        """A channel post: no sender user; the channel itself is the sender chat."""
        return self.push({"channel_post": self.new_message(chat, text, sender_chat=chat)})

    def push_callback(self, message: dict[str, Any], from_user: dict[str, Any], data: str) -> str:
        """A click on an inline button under `message` (one the bot sent); returns the query id."""
        query_id = f"cq{next(self._callback_ids)}"
        self.push({
            "callback_query": {
                "id": query_id, "from": from_user, "message": message,
                "chat_instance": str(message["chat"]["id"]), "data": data,
            }
        })
        return query_id

    def push_my_chat_member(self, chat: dict[str, Any], by: dict[str, Any], old: str, new: str) -> None:
        """The bot's own status in a chat changed: blocked ("kicked") in private, removed, added."""
        self.push({
            "my_chat_member": {
                "chat": chat, "from": by, "date": int(time.time()),
                "old_chat_member": self._member(chat["id"], BOT_ID, old),
                "new_chat_member": self._member(chat["id"], BOT_ID, new),
            }
        })

    def push_migration(self, old: dict[str, Any], new_chat_id: int, by: dict[str, Any]) -> None:
        """A group becoming a supergroup: the service messages in the old and in the new chat."""
        new = self.group(new_chat_id, old.get("title", "Group"), "supergroup")
        self.push({"message": self.new_message(old, None, by, migrate_to_chat_id=new_chat_id)})
        self.push({"message": self.new_message(new, None, by, migrate_from_chat_id=old["id"])})

    # --- what the bot did --------------------------------------------------------------------

    def calls_to(self, method: str, chat_id: int | None = None) -> list[Call]:
        return [
            c for c in list(self.calls)
            if c.method == method and c.error is None and (chat_id is None or c.chat_id == chat_id)
        ]

    def message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        """A message the bot sent, as it stands now, in the Bot API's shape."""
        return {k: v for k, v in self.messages[(chat_id, message_id)].items() if k != "_html"}

    async def wait_for(
        self, method: str, predicate: Callable[[Call], bool] = lambda c: True, timeout: float = 15.0
    ) -> Call:
        """The first successful call to `method` that satisfies `predicate`, waiting for it if need be."""
        deadline = time.monotonic() + timeout
        while True:
            for c in self.calls_to(method):
                if predicate(c):
                    return c
            if time.monotonic() > deadline:
                seen = [(c.method, c.params.get("chat_id"), c.error) for c in self.calls[-15:]]
                raise AssertionError(f"no {method} call as expected within {timeout} s; last calls: {seen}")
            await asyncio.sleep(0.02)

    async def idle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until the bot has made no call except getUpdates for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        last, since = len(self.calls), time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            busy = [c for c in self.calls[last:] if c.method != "getUpdates"]
            last = len(self.calls)
            if busy:
                since = time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
        raise AssertionError("the bot did not fall quiet")

    # --- the HTTP side -----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params, files = _decode(request.headers.get("Content-Type", ""), await request.read(), request.query)
        call = Call(method, params, {name: len(data) for name, data in files.items()})
        try:
            error = self._scripted_error(method, params.get("chat_id"))
            if error is not None:
                raise error
            handler = getattr(self, f"_api_{method}", None)
            if handler is None:
                raise BotApiError(404, "Not Found: method not found")
            result = handler(params, files)
            if asyncio.iscoroutine(result):
                result = await result
        except BotApiError as exc:
            call.error = exc.description
            return exc.response()
        else:
            call.result = result
            return web.json_response({"ok": True, "result": result})
        finally:
            # Recorded once answered, so a test never sees a call without its outcome.
            self.calls.append(call)

    def _chat(self, chat_id: Any) -> dict[str, Any]:
        if not isinstance(chat_id, int):
            raise BotApiError(400, "Bad Request: chat not found")
        kind = "private" if chat_id > 0 else "supergroup"
        return self.chats.get(chat_id) or {"id": chat_id, "type": kind, "title": "Chat"}

    def _outgoing(self, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat = self._chat(params.get("chat_id"))
        msg: dict[str, Any] = {
            "message_id": next(self._message_ids), "date": int(time.time()), "chat": chat,
            "from": self._me(), **content,
        }
        thread = params.get("message_thread_id")
        if thread is not None:
            msg["message_thread_id"] = thread
            msg["is_topic_message"] = True
        if params.get("reply_markup"):
            msg["reply_markup"] = params["reply_markup"]
        return msg

    def _store(self, msg: dict[str, Any], html: str | None = None) -> dict[str, Any]:
        stored = dict(msg)
        if html is not None:
            stored["_html"] = html
        self.messages[(msg["chat"]["id"], msg["message_id"])] = stored
        return msg

    def _me(self) -> dict[str, Any]:
        return {
            "id": BOT_ID, "is_bot": True, "first_name": "Paper Bot", "username": self.username,
            "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False,
        }

    @staticmethod
    def _text(params: dict[str, Any], key: str, limit: int) -> tuple[str, str]:
        html = str(params.get(key) or "")
        plain = parse_html(html) if params.get("parse_mode", "").upper() == "HTML" else html
        if utf16_len(plain) > limit:
            what = "message caption is too long" if key == "caption" else "message is too long"
            raise BotApiError(400, f"Bad Request: {what}")
        return html, plain

    def _api_getMe(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        return self._me()

    def _api_setWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        url = str(params.get("url") or "")
        if not url:
            return self._api_deleteWebhook(params, files)  # as Telegram: an empty url removes the webhook
        if not url.startswith("https://"):
            raise BotApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not _WEBHOOK_SECRET.fullmatch(str(secret)):
            raise BotApiError(400, "Bad Request: secret token contains unallowed characters")
        self.webhook = {"url": url, "secret_token": secret, "max_connections": params.get("max_connections")}
        return True

    def _api_deleteWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        self.webhook = None
        return True

    def _api_getWebhookInfo(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        # The secret is never shown back, as in the Bot API.
        url = self.webhook["url"] if self.webhook else ""
        return {"url": url, "has_custom_certificate": False, "pending_update_count": len(self._updates)}

    def _api_setMyCommands(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        return True

    def _api_sendChatAction(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        self._chat(params.get("chat_id"))
        return True

    def _api_answerCallbackQuery(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        if not params.get("callback_query_id"):
            raise BotApiError(400, "Bad Request: query_id_invalid")
        if utf16_len(str(params.get("text") or "")) > ANSWER_TEXT_LIMIT:
            raise BotApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        return True

    def answers(self, query_id: str) -> list[Call]:
        """The bot's answers (successful or refused) to one button press."""
        return [c for c in list(self.calls) if c.method == "answerCallbackQuery"
                and c.params.get("callback_query_id") == query_id]

    @staticmethod
    def _check_markup(params: dict[str, Any]) -> None:
        markup = params.get("reply_markup") or {}
        for row in markup.get("inline_keyboard", []):
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= CALLBACK_DATA_BYTES:
                    raise BotApiError(400, "Bad Request: BUTTON_DATA_INVALID")

    async def _api_getUpdates(self, params: dict[str, Any], files: dict[str, bytes]) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise BotApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                   "use deleteWebhook to delete the webhook first")
        offset = int(params.get("offset") or 0)
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), self.max_poll)
        while True:
            with self._lock:
                # Asking for `offset` confirms every update before it, as in the Bot API.
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                ready = list(self._updates[: int(params.get("limit") or 100)])
            if ready or time.monotonic() >= deadline:
                return ready
            await asyncio.sleep(0.01)

    def _api_sendMessage(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        html, plain = self._text(params, "text", MESSAGE_LIMIT)
        if not plain.strip():
            raise BotApiError(400, "Bad Request: message text is empty")
        self._check_markup(params)
        return self._store(self._outgoing(params, text=plain), html)

    def _api_editMessageText(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        key = (params.get("chat_id"), params.get("message_id"))
        old = self.messages.get(key)  # type: ignore[arg-type]
        if old is None:
            raise BotApiError(400, "Bad Request: message to edit not found")
        html, plain = self._text(params, "text", MESSAGE_LIMIT)
        self._check_markup(params)
        markup = params.get("reply_markup")
        if html == old.get("_html") and markup == old.get("reply_markup"):
            raise BotApiError(400, "Bad Request: message is not modified: specified new message content "
                                   "and reply markup are exactly the same as a current content and reply markup")
        msg = {k: v for k, v in old.items() if k not in ("_html", "reply_markup")}
        msg.update(text=plain, edit_date=int(time.time()))
        if markup:
            msg["reply_markup"] = markup
        return self._store(msg, html)

    def _photo(self, data: bytes | None, ref: str) -> list[dict[str, Any]]:
        if data is not None and not data:
            raise BotApiError(400, "Bad Request: file must be non-empty")
        size = len(data) if data is not None else 0
        return [{"file_id": f"p-{ref}", "file_unique_id": f"u-{ref}", "width": 320, "height": 240, "file_size": size}]

    def _api_sendPhoto(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        html, plain = self._text(params, "caption", CAPTION_LIMIT)
        data = files.get("photo")
        if data is None and not isinstance(params.get("photo"), str):
            raise BotApiError(400, "Bad Request: there is no photo in the request")
        msg = self._outgoing(params, photo=self._photo(data, str(len(self.calls))))
        if plain:
            msg["caption"] = plain
        return self._store(msg, html or None)

    def _api_sendMediaGroup(self, params: dict[str, Any], files: dict[str, bytes]) -> list[dict[str, Any]]:
        media = params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise BotApiError(400, "Bad Request: wrong number of messages in the media group: must be 2-10")
        out = []
        for k, item in enumerate(media):
            ref = str(item.get("media", ""))
            data = files.get(ref.removeprefix("attach://")) if ref.startswith("attach://") else None
            if ref.startswith("attach://") and data is None:
                raise BotApiError(400, f"Bad Request: file {ref} not found in the request")
            _, caption = self._text(item, "caption", CAPTION_LIMIT)
            msg = self._outgoing(params, photo=self._photo(data, f"{len(self.calls)}-{k}"), media_group_id="mg1")
            if caption:
                msg["caption"] = caption
            out.append(self._store(msg))
        return out

    def _member(self, chat_id: int, user_id: int, status: str | None = None) -> dict[str, Any]:
        if status is None:
            status = "administrator" if user_id == BOT_ID else self.members.get((chat_id, user_id), "member")
        user = self._me() if user_id == BOT_ID else self.user(user_id)
        member: dict[str, Any] = {"status": status, "user": user}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(dict.fromkeys(
                ["can_be_edited", "is_anonymous", "can_restrict_members", "can_promote_members"], False
            ))
            member.update(dict.fromkeys(
                ["can_manage_chat", "can_delete_messages", "can_manage_video_chats", "can_change_info",
                 "can_invite_users", "can_post_stories", "can_edit_stories", "can_delete_stories"], True
            ))
        elif status == "kicked":
            member["until_date"] = 0
        return member

    def _api_getChatMember(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        chat = self._chat(params.get("chat_id"))
        return self._member(chat["id"], int(params["user_id"]))

    def _api_getChatAdministrators(self, params: dict[str, Any], files: dict[str, bytes]) -> list[dict[str, Any]]:
        chat = self._chat(params.get("chat_id"))
        admins = [u for (c, u), s in self.members.items() if c == chat["id"] and s in ("creator", "administrator")]
        return [self._member(chat["id"], u) for u in [BOT_ID, *admins]]

    def _api_getChat(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        chat = self._chat(params.get("chat_id"))
        gifts = dict.fromkeys(
            ["unlimited_gifts", "limited_gifts", "unique_gifts", "premium_subscription", "gifts_from_channels"], False
        )
        return {**chat, "accent_color_id": 0, "max_reaction_count": 11, "accepted_gift_types": gifts}


def _decode(content_type: str, body: bytes, query: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A Bot API request's parameters (typed as Telegram reads them) and uploaded files."""
    raw: dict[str, Any] = dict(query)
    files: dict[str, bytes] = {}
    if content_type.startswith("application/json"):
        raw.update(json.loads(body or b"{}"))
    elif content_type.startswith("multipart/form-data"):
        msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename() is not None:
                files[str(name)] = payload
            else:
                raw[str(name)] = payload.decode()
    elif body:
        raw.update(parse_qsl(body.decode(), keep_blank_values=True))
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str) and key in _JSON_PARAMS:
            value = json.loads(value)
        elif isinstance(value, str) and key in _INT_PARAMS and re.fullmatch(r"-?\d+", value):
            value = int(value)
        params[key] = value
    return params, files
