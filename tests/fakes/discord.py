"""A fake Discord on 127.0.0.1: the REST API under /api/v10 and a gateway websocket.

It speaks enough of both for the real discord.py client: login, application info, the
command sync, channel messages (JSON and multipart with files), interaction callbacks and
followup webhooks; on the gateway HELLO, heartbeats, IDENTIFY -> READY, and the events a
test injects (slash commands and button clicks, with member permissions). Every REST call
is in `.requests`; every message it accepted is in `.messages`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, TypeVar

import pytest
import yarl
from aiohttp import WSMsgType, web

from tests.fakes.server import ThreadedServer

T = TypeVar("T")

APP_ID = 1_100_000_000_000_000_001
GUILD_ID = 1_100_000_000_000_000_002
CHANNEL_ID = 1_100_000_000_000_000_003
DM_CHANNEL_ID = 1_100_000_000_000_000_004
USER_ID = 1_100_000_000_000_000_005

# Permission bits (https://discord.com/developers/docs/topics/permissions)
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MEMBER = VIEW_CHANNEL | SEND_MESSAGES

_OPTION_TYPES: dict[type, int] = {str: 3, int: 4, bool: 5}


@dataclass
class SentMessage:
    """A message the bot created: in a channel, as an interaction response, or as a followup."""

    id: int
    channel_id: int
    via: str  # "channel", "callback", "followup", "edit"
    token: str | None  # the interaction's, for callback/followup/edit
    payload: dict[str, Any]  # what Discord answered, as discord.py parses it
    files: list[tuple[str, bytes]] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)  # what the bot sent (allowed_mentions, ...)

    @property
    def content(self) -> str:
        return str(self.payload.get("content") or "")

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return list(self.payload.get("embeds") or [])

    @property
    def flags(self) -> int:
        return int(self.payload.get("flags") or 0)

    def buttons(self) -> list[dict[str, Any]]:
        return [c for row in self.payload.get("components") or [] for c in row.get("components", []) if c["type"] == 2]


@dataclass
class Callback:
    interaction_id: int
    token: str
    type: int  # 4 message, 5 deferred ("thinking"), 6 deferred update, 7 update
    data: dict[str, Any]


class FakeDiscord:
    def __init__(self, token: str) -> None:
        self.token = token
        self.app = web.Application()
        self.server = ThreadedServer(self.app)
        self.messages: list[SentMessage] = []
        self.callbacks: list[Callback] = []
        self.commands: list[dict[str, Any]] = []
        self.identified = 0  # IDENTIFY payloads with the right token
        self.failures: dict[int, tuple[int, int, str]] = {}  # channel id -> (status, code, message)
        self.fail_after: dict[int, int] = {}  # channel id -> messages let through before the failure
        self.deleted_originals: set[str] = set()  # tokens whose original response (e.g. "thinking…") was deleted
        self.refusals: list[tuple[str, str, int]] = []  # (method, path, status) of every 4xx/5xx answer
        self._ids = itertools.count(1_200_000_000_000_000_000)
        self._interactions: dict[str, int] = {}  # token -> channel id
        self._ws: web.WebSocketResponse | None = None
        self._compressor: Any = None
        self._seq = 0
        self.bot_user = self._user(APP_ID, "paperbot", bot=True)
        self.app.middlewares.append(self._record_refusals)
        r = self.app.router
        r.add_get("/gateway/", self._gateway)
        r.add_get("/api/v10/users/@me", self._authed(self._me))
        r.add_get("/api/v10/oauth2/applications/@me", self._authed(self._application))
        r.add_get("/api/v10/gateway/bot", self._authed(self._gateway_bot))
        r.add_get("/api/v10/gateway", self._gateway_bot)
        r.add_put("/api/v10/applications/{app}/commands", self._authed(self._bulk_overwrite))
        r.add_post("/api/v10/channels/{channel}/messages", self._authed(self._channel_message))
        r.add_post("/api/v10/interactions/{iid}/{token}/callback", self._callback)
        r.add_post("/api/v10/webhooks/{app}/{token}", self._followup)
        r.add_patch("/api/v10/webhooks/{app}/{token}/messages/@original", self._edit_original)
        r.add_delete("/api/v10/webhooks/{app}/{token}/messages/@original", self._delete_original)

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def requests(self) -> list[Any]:
        return self.server.requests

    @property
    def api_url(self) -> str:
        return f"{self.server.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/gateway/"

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point discord.py at this fake for the test: REST base and the gateway a plain Client opens."""
        import discord.gateway
        import discord.http

        monkeypatch.setattr(discord.http.Route, "BASE", self.api_url)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(self.gateway_url))

    def __enter__(self) -> FakeDiscord:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ws is not None:
            self._on_loop(self._ws.close())
        self.server.stop()

    def _on_loop(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.server._loop).result(10)

    # --- what tests drive ----------------------------------------------------------------

    def fail_channel(
        self, channel_id: int, status: int = 403, code: int = 50001, message: str = "Missing Access", *, after: int = 0
    ) -> None:
        """Refuse every message to the channel from now on, once `after` more went through."""
        self.failures[channel_id] = (status, code, message)
        self.fail_after[channel_id] = after

    def slash(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        guild: bool = True,
        permissions: int = MEMBER,
        user_id: int = USER_ID,
        channel_id: int | None = None,
    ) -> str:
        """Inject a slash command as Discord would send it; return the interaction token."""
        command = next((c for c in self.commands if c["name"] == name), None)
        if command is None:
            raise AssertionError(f"/{name} was never synced; synced: {[c['name'] for c in self.commands]}")
        known = {o["name"] for o in command.get("options", [])}
        given = options or {}
        if set(given) - known:
            raise AssertionError(f"/{name} has no option(s) {sorted(set(given) - known)}; it has {sorted(known)}")
        data = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": [{"name": k, "type": _OPTION_TYPES[type(v)], "value": v} for k, v in given.items()],
        }
        return self._interact(2, data, guild=guild, permissions=permissions, user_id=user_id, channel_id=channel_id)

    def click(
        self, message: SentMessage, custom_id: str, *, guild: bool = True, permissions: int = MEMBER, user_id: int = USER_ID
    ) -> str:
        """Inject a button click on `message`; return the interaction token.

        Discord sends only the custom_ids of a message's own components, so that is all a click can carry.
        """
        if custom_id not in {b.get("custom_id") for b in message.buttons()}:
            raise AssertionError(f"message {message.id} has no button {custom_id!r}")
        data = {"custom_id": custom_id, "component_type": 2}
        return self._interact(
            3,
            data,
            guild=guild,
            permissions=permissions,
            user_id=user_id,
            channel_id=message.channel_id,
            message=message.payload,
        )

    def old_message(self, channel_id: int, custom_id: str, label: str = "Full breakdown") -> SentMessage:
        """A message of the bot's from before (an earlier version, another database), with one button."""
        button = {"type": 2, "style": 1, "label": label, "custom_id": custom_id}
        self._record("channel", None, channel_id, {"content": "an old post", "components": [
            {"type": 1, "components": [button]}]}, [], webhook=False)
        return self.messages[-1]

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        if self._ws is None:
            raise AssertionError("no client is connected to the fake gateway")
        self._on_loop(self._dispatch(event, data))

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 20.0, what: str = "") -> T:
        """Poll from the test's loop (the client runs there) until `predicate()` is truthy."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (result := predicate()):
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what or predicate}")
            await asyncio.sleep(0.02)
        return result

    def callbacks_for(self, token: str) -> list[Callback]:
        return [c for c in self.callbacks if c.token == token]

    def replies(self, token: str) -> list[SentMessage]:
        """Messages answering one interaction, in order: callback message, followups, edits."""
        return [m for m in self.messages if m.token == token]

    def channel_of(self, token: str) -> int:
        return self._interactions[token]

    def in_channel(self, channel_id: int) -> list[SentMessage]:
        return [m for m in self.messages if m.via == "channel" and m.channel_id == channel_id]

    # --- payload builders ----------------------------------------------------------------

    def _id(self) -> int:
        return next(self._ids)

    @staticmethod
    def _user(user_id: int, name: str, bot: bool = False) -> dict[str, Any]:
        return {
            "id": str(user_id), "username": name, "discriminator": "0", "global_name": name,
            "avatar": None, "bot": bot, "public_flags": 0,
        }

    def _interact(
        self,
        kind: int,
        data: dict[str, Any],
        *,
        guild: bool,
        permissions: int,
        user_id: int,
        channel_id: int | None,
        message: dict[str, Any] | None = None,
    ) -> str:
        iid = self._id()
        token = f"interaction-token-{iid}"
        channel = channel_id or (CHANNEL_ID if guild else DM_CHANNEL_ID)
        self._interactions[token] = channel
        user = self._user(user_id, f"user{user_id % 1000}")
        payload: dict[str, Any] = {
            "id": str(iid), "application_id": str(APP_ID), "type": kind, "token": token, "version": 1,
            "data": data, "channel_id": str(channel), "locale": "en-US", "entitlements": [],
            "attachment_size_limit": 10 * 2**20, "app_permissions": str(MEMBER | (1 << 15)),
        }
        if guild:
            payload.update(
                guild_id=str(GUILD_ID), guild_locale="en-US", context=0,
                authorizing_integration_owners={"0": str(GUILD_ID)},
                channel={"id": str(channel), "type": 0, "guild_id": str(GUILD_ID), "name": "papers",
                         "position": 0, "permission_overwrites": [], "nsfw": False, "parent_id": None},
                member={"user": user, "roles": [], "joined_at": _now(), "deaf": False, "mute": False,
                        "flags": 0, "pending": False, "permissions": str(permissions)},
            )
        else:
            payload.update(
                context=1, user=user, authorizing_integration_owners={"1": str(user_id)},
                channel={"id": str(channel), "type": 1, "recipients": [user]},
            )
        if message is not None:
            payload["message"] = message
        self.dispatch("INTERACTION_CREATE", payload)
        return token

    def _message(
        self, channel_id: int, body: dict[str, Any], files: list[tuple[str, bytes, str]], webhook: bool
    ) -> dict[str, Any]:
        mid = self._id()
        attachments = [
            {"id": str(self._id()), "filename": name, "size": len(data), "content_type": ctype,
             "url": f"{self.server.url}/attachments/{mid}/{name}", "proxy_url": f"{self.server.url}/p/{mid}/{name}"}
            for name, data, ctype in files
        ]
        message = {
            "id": str(mid), "channel_id": str(channel_id), "type": 0, "content": body.get("content") or "",
            "author": self.bot_user, "embeds": body.get("embeds") or [], "components": body.get("components") or [],
            "attachments": attachments, "timestamp": _now(), "edited_timestamp": None, "tts": bool(body.get("tts")),
            "mention_everyone": False, "mentions": [], "mention_roles": [], "pinned": False,
            "flags": int(body.get("flags") or 0),
        }
        if webhook:
            message.update(webhook_id=str(APP_ID), application_id=str(APP_ID))
        return message

    def _record(self, via: str, token: str | None, channel_id: int, body: dict[str, Any],
                files: list[tuple[str, bytes, str]], webhook: bool) -> dict[str, Any]:
        message = self._message(channel_id, body, files, webhook)
        self.messages.append(
            SentMessage(int(message["id"]), channel_id, via, token, message, [(n, d) for n, d, _ in files], body)
        )
        return message

    # --- REST handlers -------------------------------------------------------------------

    @web.middleware
    async def _record_refusals(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        response = await handler(request)
        if response.status >= 400:
            self.refusals.append((request.method, request.path, response.status))
        return response

    def _authed(self, handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def check(request: web.Request) -> web.StreamResponse:
            if request.headers.get("Authorization") != f"Bot {self.token}":
                return _error(401, 0, "401: Unauthorized")
            return await handler(request)

        return check

    async def _me(self, request: web.Request) -> web.Response:
        return _json({**self.bot_user, "verified": True, "mfa_enabled": False, "flags": 0})

    async def _application(self, request: web.Request) -> web.Response:
        return _json({
            "id": str(APP_ID), "name": "paperbot", "description": "", "icon": None, "bot_public": True,
            "bot_require_code_grant": False, "owner": self._user(USER_ID, "owner"), "verify_key": "00" * 32,
            "flags": 0, "interactions_endpoint_url": None,
        })

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        return _json({
            "url": self.gateway_url.rstrip("/"), "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
        })

    async def _bulk_overwrite(self, request: web.Request) -> web.Response:
        if int(request.match_info["app"]) != APP_ID:
            return _error(404, 10002, "Unknown Application")
        body = json.loads(await request.read() or b"[]")
        self.commands = [
            {**cmd, "id": str(self._id()), "application_id": str(APP_ID), "version": str(self._id()),
             "type": cmd.get("type", 1), "default_member_permissions": cmd.get("default_member_permissions")}
            for cmd in body
        ]
        return _json(self.commands)

    async def _channel_message(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["channel"])
        if channel_id in self.failures and self.fail_after.get(channel_id, 0) > 0:
            self.fail_after[channel_id] -= 1
        elif channel_id in self.failures:
            status, code, message = self.failures[channel_id]
            return _error(status, code, message)
        body, files = await self._body(request)
        if problem := _invalid(body, files):
            return _error(400, 50035, f"Invalid Form Body: {problem}")
        return _json(self._record("channel", None, channel_id, body, files, webhook=False))

    async def _callback(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if token not in self._interactions:
            return _error(404, 10062, "Unknown interaction")
        if any(c.token == token for c in self.callbacks):
            return _error(400, 40060, "Interaction has already been acknowledged.")
        body, files = await self._body(request)
        kind = int(body["type"])
        data = body.get("data") or {}
        if kind in (4, 7) and (problem := _invalid(data, files)):
            return _error(400, 50035, f"Invalid Form Body: {problem}")
        self.callbacks.append(Callback(int(request.match_info["iid"]), token, kind, data))
        result: dict[str, Any] = {
            "interaction": {
                "id": request.match_info["iid"], "type": 2,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(int(data.get("flags") or 0) & 64),
            },
            "resource": {"type": kind},
        }
        if kind == 4:
            message = self._record("callback", token, self._interactions[token], data, files, webhook=True)
            result["interaction"]["response_message_id"] = message["id"]
            result["resource"]["message"] = message
        return _json(result)

    async def _followup(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if token not in self._interactions or not self.callbacks_for(token):
            return _error(404, 10015, "Unknown Webhook")
        body, files = await self._body(request)
        if problem := _invalid(body, files):
            return _error(400, 50035, f"Invalid Form Body: {problem}")
        deferred = [c for c in self.callbacks_for(token) if c.type == 5]
        if deferred and token not in self.deleted_originals and not any(
            m.via == "followup" for m in self.replies(token)
        ):
            # As on Discord: the first followup after a deferred response takes the place of the
            # "thinking…" message and keeps its visibility, whatever flags it asks for.
            ephemeral = int(deferred[0].data.get("flags") or 0) & 64
            body = {**body, "flags": (int(body.get("flags") or 0) & ~64) | ephemeral}
        message = self._record("followup", token, self._interactions[token], body, files, webhook=True)
        return _json(message)

    async def _delete_original(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if token not in self._interactions or not self.callbacks_for(token):
            return _error(404, 10015, "Unknown Webhook")
        self.deleted_originals.add(token)
        return web.Response(status=204)

    async def _edit_original(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if token not in self._interactions:
            return _error(404, 10015, "Unknown Webhook")
        body, files = await self._body(request)
        return _json(self._record("edit", token, self._interactions[token], body, files, webhook=True))

    async def _body(self, request: web.Request) -> tuple[dict[str, Any], list[tuple[str, bytes, str]]]:
        """JSON or multipart (payload_json + files[n]); aiohttp's parser cannot reread a consumed body."""
        raw = await request.read()
        if not request.content_type.startswith("multipart/"):
            return (json.loads(raw) if raw else {}), []
        head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
        parsed = BytesParser(policy=HTTP).parsebytes(head + raw)
        body: dict[str, Any] = {}
        files: list[tuple[str, bytes, str]] = []
        for part in parsed.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            if name == "payload_json":
                body = json.loads(data)
            elif isinstance(name, str) and name.startswith("files["):
                files.append((part.get_filename() or name, data, part.get_content_type()))
        return body, files

    # --- gateway -------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        compress = request.query.get("compress")
        if compress not in (None, "zlib-stream"):
            await ws.close(code=4000, message=b"unsupported compression")
            return ws
        self._ws, self._seq = ws, 0
        self._compressor = zlib.compressobj() if compress == "zlib-stream" else None
        await self._send({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            op = frame.get("op")
            if op == 1:
                await self._send({"op": 11, "d": None, "s": None, "t": None})
            elif op == 2:
                if frame["d"].get("token") != self.token:
                    await ws.close(code=4004, message=b"Authentication failed.")
                    break
                self.identified += 1
                await self._dispatch("READY", {
                    "v": 10, "user": self.bot_user, "guilds": [], "session_id": f"session-{self._id()}",
                    "resume_gateway_url": self.gateway_url, "shard": [0, 1],
                    "application": {"id": str(APP_ID), "flags": 0},
                })
            elif op == 6:  # RESUME: this fake keeps no sessions, so start over as Discord may
                await self._send({"op": 9, "d": False, "s": None, "t": None})
        if self._ws is ws:
            self._ws = None
        return ws

    async def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        self._seq += 1
        await self._send({"op": 0, "t": event, "s": self._seq, "d": data})

    async def _send(self, frame: dict[str, Any]) -> None:
        assert self._ws is not None
        text = json.dumps(frame)
        if self._compressor is None:
            await self._ws.send_str(text)
        else:
            data = self._compressor.compress(text.encode()) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
            await self._ws.send_bytes(data)


def _invalid(body: dict[str, Any], files: list[Any]) -> str | None:
    """Discord's message limits (the ones a bot can run into); None when the message is fine."""
    embeds = body.get("embeds") or []
    if len(body.get("content") or "") > 2000:
        return "content is longer than 2000"
    if len(embeds) > 10 or len(files) > 10:
        return "more than 10 embeds or files"
    for e in embeds:
        text = [e.get("title", ""), e.get("description", ""), e.get("footer", {}).get("text", ""),
                e.get("author", {}).get("name", "")] + [f["name"] + f["value"] for f in e.get("fields", [])]
        if sum(map(len, text)) > 6000 or len(e.get("title", "")) > 256 or len(e.get("description", "")) > 4096:
            return "embed over its limits"
        if len(e.get("fields", [])) > 25 or any(len(f["name"]) > 256 or len(f["value"]) > 1024 for f in e.get("fields", [])):
            return "embed field over its limits"
    rows = body.get("components") or []
    buttons = [c for row in rows for c in row.get("components", [])]
    if len(rows) > 5 or any(len(c.get("custom_id", "")) > 100 or len(c.get("label", "")) > 80 for c in buttons):
        return "components over their limits"
    if not (body.get("content") or embeds or files or rows):
        return "cannot send an empty message"
    return None


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _json(value: Any, status: int = 200) -> web.Response:
    # Exactly `application/json`, no charset: discord.py decodes JSON only for that literal header.
    return web.Response(body=json.dumps(value).encode(), status=status, headers={"Content-Type": "application/json"})


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"message": message, "code": code}, status=status)
