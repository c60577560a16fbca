"""Button data that only the bot can make: signed "Full breakdown" payloads (pure, but for the key).

Telegram clients can send any `callback_data` they like, and a Discord `custom_id` is no
safer, so a button's data carries an HMAC-SHA256 tag (its first 12 bytes, base64url) made
with a key the bot generates once and keeps in the store's `meta` table. Data without a
valid tag is refused before it can cost a lookup, a post or an LLM call.

Format: `bd1|<arxiv id>|<version>|<language>|<tag>`, at most 64 bytes (Telegram's limit for
callback data; Discord allows 100). When a long language name would not fit, it is left
empty and the chat's language is used instead.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from bot.background import running
from bot.store import buttons as button_store

log = logging.getLogger(__name__)

CALLBACK_DATA_BYTES = 64
PREFIX = "bd1"
LEGACY_PREFIX = "bd|"  # unsigned buttons of earlier versions: answered, never served
_TAG_BYTES = 12
META_KEY = "button_key"


class _Meta(Protocol):
    async def get_meta(self, key: str) -> str | None: ...

    async def add_meta(self, key: str, value: str) -> str: ...


class _Claims(Protocol):
    async def touch_button_post(self, platform: str, chat_id: str, message_id: str, kind: str) -> None: ...


@contextlib.asynccontextmanager
async def claim_kept(store: _Claims, platform: str, chat_id: str, message_id: str, kind: str) -> AsyncIterator[None]:
    """Keep a post's button claim fresh while the block runs (every third of CLAIM_TIMEOUT).

    A press that needs a new summary can wait behind a poll's summaries and the LLM's retries for
    longer than CLAIM_TIMEOUT; without this a later press would take the live claim over and post
    the breakdown a second time. A claim whose holder died still goes stale.
    """
    async def keep() -> None:
        while True:
            # CLAIM_TIMEOUT read each time, as claim_button_post reads it (tests shorten it).
            await asyncio.sleep(button_store.CLAIM_TIMEOUT.total_seconds() / 3)
            try:
                await store.touch_button_post(platform, chat_id, message_id, kind)
            except Exception as exc:  # noqa: BLE001 - at worst a later press posts it again
                log.warning("could not refresh the claim on a button of message %s: %s", message_id, exc)

    async with running(keep):
        yield


@dataclass(frozen=True, slots=True)
class BreakdownRef:
    """What a breakdown button points at; `language` is "" for "the chat's language"."""

    arxiv_id: str
    version: int
    language: str

    @property
    def versioned_id(self) -> str:
        return f"{self.arxiv_id}v{self.version}"


class ButtonSigner:
    """Makes and checks signed button data. The key never appears in its repr or in the data."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a button key needs at least 16 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "ButtonSigner(<key hidden>)"

    def _tag(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:_TAG_BYTES]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def breakdown(self, arxiv_id: str, version: int, language: str) -> str:
        """Signed data for a paper's "Full breakdown" button, within CALLBACK_DATA_BYTES."""
        for lang in (language, ""):
            payload = f"{PREFIX}|{arxiv_id}|{version}|{lang}"
            data = f"{payload}|{self._tag(payload)}"
            if len(data.encode()) <= CALLBACK_DATA_BYTES:
                return data
        raise ValueError(f"a breakdown button for {arxiv_id}v{version} does not fit in {CALLBACK_DATA_BYTES} bytes")

    def read(self, data: str | None) -> BreakdownRef | None:
        """The reference in signed data; None for anything the bot did not make (or made with another key)."""
        if not data or len(data.encode()) > CALLBACK_DATA_BYTES:
            return None
        payload, _, tag = data.rpartition("|")
        parts = payload.split("|")
        if len(parts) != 4 or parts[0] != PREFIX:
            return None
        if not hmac.compare_digest(tag, self._tag(payload)):
            return None
        _, arxiv_id, version, language = parts
        if not version.isascii() or not version.isdigit():
            return None
        return BreakdownRef(arxiv_id, int(version), language)


def new_key() -> bytes:
    return secrets.token_bytes(32)


async def load_signer(store: _Meta) -> ButtonSigner:
    """The signer with the store's key, generated on first use.

    Two processes starting at once on one database agree: the first key written wins
    (`add_meta` inserts only when the key is absent and returns what is stored).
    """
    stored = await store.get_meta(META_KEY)
    if stored is None:
        stored = await store.add_meta(META_KEY, new_key().hex())
    return ButtonSigner(bytes.fromhex(stored))
