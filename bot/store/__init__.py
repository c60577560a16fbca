"""The only module that speaks SQL: one SQLite file through aiosqlite, WAL, versioned migrations."""

from __future__ import annotations

from bot.store.base import StoreBase
from bot.store.chats import ChatStore
from bot.store.feed import FeedStore
from bot.store.ledger import LedgerStore
from bot.store.papers import PaperStore
from bot.store.polls import PollStore


class Store(LedgerStore, PollStore, FeedStore, PaperStore, ChatStore, StoreBase):
    """Every query of the project, grouped by concern in the mixins."""


__all__ = ["Store"]
