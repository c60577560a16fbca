"""What the core asks of a chat platform when it pushes papers; each adapter implements it."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date
from pathlib import Path
from typing import Protocol

from bot.models import Chat, MatchReason, Paper, Platform, Summary


class ChatGone(Exception):
    """The chat blocked or removed the bot: switch it off, keep its topics."""


class TransientSendError(Exception):
    """The platform could not take the message now (network error, timeout, 5xx, a 429 that the
    rate limiter did not absorb): the same message is tried again after a backoff."""


class PermanentSendError(Exception):
    """The platform refused this message and will refuse it again as it is (HTTP 400, Discord
    50013 Missing Permissions, Telegram "not enough rights"). Delivery still tries it a few times
    an hour, since an admin may grant the right, and gives it up after a day."""


class ChatMoved(Exception):
    """The chat has a new id (a Telegram group that became a supergroup)."""

    def __init__(self, new_chat_id: str) -> None:
        super().__init__(f"chat moved to {new_chat_id}")
        self.new_chat_id = new_chat_id


class PartlySent(Exception):
    """A message that takes several platform messages (a long list of papers) failed after some
    of them went out: the papers in `sent` (arXiv ids) reached the chat and must not be sent
    again; `error` is what stopped the rest, handled as if the whole message had failed with it
    (ChatGone, ChatMoved, TransientSendError, PermanentSendError, or any other error)."""

    def __init__(self, sent: Collection[str], error: Exception) -> None:
        super().__init__(f"{len(sent)} paper(s) sent, then: {type(error).__name__}: {error}")
        self.sent = frozenset(sent)
        self.error = error


class Sender(Protocol):
    platform: Platform

    async def send_header(self, chat: Chat, title: str, day: date, count: int) -> None:
        """The digest's first message: '<title> — YYYY-MM-DD: N new papers'."""

    async def send_paper(
        self, chat: Chat, summary: Summary, images: list[Path], why: Sequence[MatchReason] | None = None
    ) -> None:
        """One paper's post, as /summary shows it: takeaways, thumbnails, breakdown button, and
        `why` it matched (the chat's topics and their matched terms), when pushed."""

    async def send_paper_list(self, chat: Chat, papers: list[Paper]) -> None:
        """The papers over the chat's maximum, as a compact list of links. When the list takes
        several messages and one after the first fails, raise PartlySent naming the papers of
        the messages that went out."""
