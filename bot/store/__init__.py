"""The only module that speaks SQL: SQLite (aiosqlite, WAL) or PostgreSQL (asyncpg), versioned migrations."""

from __future__ import annotations

from bot.store.base import StoreBase
from bot.store.buttons import ButtonStore
from bot.store.chats import ChatStore
from bot.store.claims import ClaimStore
from bot.store.feed import FeedStore
from bot.store.health import HealthStore
from bot.store.ledger import LedgerStore
from bot.store.papers import PaperStore
from bot.store.polls import PollStore
from bot.store.posts import PostStore
from bot.store.usage import UsageStore


class Store(
    LedgerStore, PollStore, ClaimStore, UsageStore, FeedStore, PaperStore, PostStore, ChatStore, HealthStore,
    ButtonStore, StoreBase,
):
    """Every query of the project, grouped by concern in the mixins."""


__all__ = ["Store"]
