"""Chats, their topics (subscriptions) and the per-user summary quota."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.models import Chat, ChatKind, Platform, Topic
from bot.store.base import StoreBase, now_iso

_CHAT_COLS = "id, platform, chat_id, kind, title, language, timezone, push_time, max_papers, active"


def chat_from_row(row: Any) -> Chat:
    return Chat(
        id=row["id"],
        platform=Platform(row["platform"]),
        chat_id=row["chat_id"],
        kind=ChatKind(row["kind"]),
        title=row["title"],
        language=row["language"],
        timezone=row["timezone"],
        push_time=row["push_time"],
        max_papers=row["max_papers"],
        active=bool(row["active"]),
    )


class ChatStore(StoreBase):
    async def get_chat(self, platform: Platform, chat_id: str) -> Chat | None:
        row = await self.fetchone(
            f"SELECT {_CHAT_COLS} FROM chats WHERE platform=? AND chat_id=?", (platform, chat_id)
        )
        return chat_from_row(row) if row else None

    async def get_chat_by_pk(self, pk: int) -> Chat | None:
        row = await self.fetchone(f"SELECT {_CHAT_COLS} FROM chats WHERE id=?", (pk,))
        return chat_from_row(row) if row else None

    async def ensure_chat(self, chat: Chat) -> Chat:
        """Return the stored chat, creating it with `chat`'s settings when new.

        A chat that writes again after blocking the bot is switched back on. It then gets the
        papers of the latest announcement at most, not the backlog of the weeks it was off: its
        `backlog_from` is set to that announcement, and its unsent older rows are given up.
        """
        async with self.transaction() as db:
            async with db.execute(
                "SELECT id, active FROM chats WHERE platform=? AND chat_id=?", (chat.platform, chat.chat_id)
            ) as cur:
                before = await cur.fetchone()
            await db.execute(
                "INSERT INTO chats(platform, chat_id, kind, title, language, timezone, push_time, "
                "max_papers, active, created_at) VALUES (?,?,?,?,?,?,?,?,1,?) "
                "ON CONFLICT(platform, chat_id) DO UPDATE SET active=1, kind=excluded.kind, "
                "title=CASE WHEN excluded.title='' THEN chats.title ELSE excluded.title END",
                (
                    chat.platform,
                    chat.chat_id,
                    chat.kind,
                    chat.title,
                    chat.language,
                    chat.timezone,
                    chat.push_time,
                    chat.max_papers,
                    now_iso(),
                ),
            )
            if before is not None and not before["active"]:
                async with db.execute("SELECT value FROM meta WHERE key='last_announcement'") as cur:
                    latest = await cur.fetchone()
                if latest is not None:
                    await db.execute("UPDATE chats SET backlog_from=? WHERE id=?", (latest[0], before["id"]))
                    await db.execute(
                        "UPDATE deliveries SET status='given_up', error='the chat was switched off' "
                        "WHERE chat_pk=? AND announced<? AND status IN ('pending','sending')",
                        (before["id"], latest[0]),
                    )
        stored = await self.get_chat(chat.platform, chat.chat_id)
        assert stored is not None
        return stored

    async def update_chat_settings(self, pk: int, **values: Any) -> None:
        allowed = {"language", "timezone", "push_time", "max_papers", "title"}
        bad = set(values) - allowed
        if bad:
            raise ValueError(f"not a chat setting: {', '.join(sorted(bad))}")
        if not values:
            return
        cols = ", ".join(f"{k}=?" for k in values)
        await self.execute(f"UPDATE chats SET {cols} WHERE id=?", (*values.values(), pk))

    async def set_chat_active(self, platform: Platform, chat_id: str, active: bool) -> None:
        await self.execute(
            "UPDATE chats SET active=? WHERE platform=? AND chat_id=?", (int(active), platform, chat_id)
        )

    async def migrate_chat(self, platform: Platform, old_id: str, new_id: str) -> None:
        """Move a chat (topics, settings, ledger) to a new id, as when a group becomes a supergroup."""
        async with self.transaction() as db:
            async with db.execute(
                "SELECT id FROM chats WHERE platform=? AND chat_id=?", (platform, new_id)
            ) as cur:
                existing = await cur.fetchone()
            if existing is not None:
                # Both ids have a row: the one made first (the lower id) is the chat, with its topics and
                # settings; the other was made by an update that came before the move was known: the new
                # id writing before the migration message was handled, or a button pressed on a post of
                # the old group afterwards (the old id registered afresh, with default settings).
                async with db.execute(
                    "SELECT id FROM chats WHERE platform=? AND chat_id=?", (platform, old_id)
                ) as cur:
                    old = await cur.fetchone()
                if old is None:
                    return
                keep, stray = sorted((int(old[0]), int(existing[0])))
                # Rows the kept chat has too stay with it; the other's copies go with its chat row.
                await db.execute(
                    "UPDATE subscriptions SET chat_pk=? WHERE chat_pk=? AND topic_id NOT IN "
                    "(SELECT topic_id FROM subscriptions WHERE chat_pk=?)",
                    (keep, stray, keep),
                )
                await db.execute(
                    "UPDATE deliveries SET chat_pk=? WHERE chat_pk=? AND arxiv_id NOT IN "
                    "(SELECT arxiv_id FROM deliveries WHERE chat_pk=?)",
                    (keep, stray, keep),
                )
                await db.execute("DELETE FROM chats WHERE id=?", (stray,))
                if keep == int(existing[0]):  # already under the new id
                    await db.execute(
                        "UPDATE chats SET kind=?, active=1 WHERE id=?", (ChatKind.SUPERGROUP, keep)
                    )
                    return
            await db.execute(
                "UPDATE chats SET chat_id=?, kind=?, active=1 WHERE platform=? AND chat_id=?",
                (new_id, ChatKind.SUPERGROUP, platform, old_id),
            )

    async def count_chats(self) -> tuple[int, int]:
        row = await self.fetchone("SELECT COUNT(*), COALESCE(SUM(active), 0) FROM chats")
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def active_chats(self) -> list[Chat]:
        rows = await self.fetchall(f"SELECT {_CHAT_COLS} FROM chats WHERE active=1 ORDER BY id")
        return [chat_from_row(r) for r in rows]

    # --- topics -------------------------------------------------------------------------

    async def add_topic(self, chat_pk: int, query: str, since: str | None = None) -> tuple[Topic, bool]:
        """Subscribe a chat to a (normalized) query; return the topic and whether it is new."""
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO topics(query, created_at) VALUES (?,?) ON CONFLICT(query) DO NOTHING", (query, now_iso())
            )
            async with db.execute("SELECT id FROM topics WHERE query=?", (query,)) as cur:
                topic_row = await cur.fetchone()
            assert topic_row is not None
            async with db.execute(
                "INSERT INTO subscriptions(chat_pk, topic_id, created_at, since) VALUES (?,?,?,?) "
                "ON CONFLICT(chat_pk, topic_id) DO NOTHING",
                (chat_pk, topic_row[0], now_iso(), since),
            ) as cur:
                created = cur.rowcount == 1
            async with db.execute(
                "SELECT id, created_at FROM subscriptions WHERE chat_pk=? AND topic_id=?",
                (chat_pk, topic_row[0]),
            ) as cur:
                sub = await cur.fetchone()
        assert sub is not None
        return Topic(sub[0], chat_pk, query, datetime.fromisoformat(sub[1])), created

    async def list_topics(self, chat_pk: int) -> list[Topic]:
        rows = await self.fetchall(
            "SELECT s.id, s.chat_pk, t.query, s.created_at FROM subscriptions s "
            "JOIN topics t ON t.id=s.topic_id WHERE s.chat_pk=? ORDER BY s.id",
            (chat_pk,),
        )
        return [Topic(r[0], r[1], r[2], datetime.fromisoformat(r[3])) for r in rows]

    async def remove_topics(self, chat_pk: int, ids: list[int] | None) -> int:
        """Remove the given subscription ids of a chat (all when `ids` is None); return the count."""
        if ids is None:
            sql, params = "DELETE FROM subscriptions WHERE chat_pk=?", (chat_pk,)
        else:
            marks = ",".join("?" * len(ids))
            sql, params = (
                f"DELETE FROM subscriptions WHERE chat_pk=? AND id IN ({marks})",
                (chat_pk, *ids),
            )
        async with self.transaction() as db:
            async with db.execute(sql, params) as cur:
                removed = cur.rowcount
            # A query nobody follows any more need not be matched.
            await db.execute(
                "DELETE FROM topics WHERE id NOT IN (SELECT topic_id FROM subscriptions)"
            )
        return removed

    async def count_subscriptions(self) -> int:
        row = await self.fetchone("SELECT COUNT(*) FROM subscriptions")
        return int(row[0]) if row else 0

    # --- quota --------------------------------------------------------------------------

    async def quota_used(self, user_key: str, window: timedelta = timedelta(hours=1)) -> int:
        since = (datetime.now(UTC) - window).isoformat(timespec="seconds")
        row = await self.fetchone(
            "SELECT COUNT(*) FROM quota_events WHERE user_key=? AND at>=?", (user_key, since)
        )
        return int(row[0]) if row else 0

    async def quota_take(self, user_key: str, limit: int, window: timedelta = timedelta(hours=1)) -> bool:
        """Charge one use if fewer than `limit` were used in `window`; False when none is left.

        Count and charge in one transaction, so concurrent requests cannot both take the last one.
        """
        since = (datetime.now(UTC) - window).isoformat(timespec="seconds")
        async with self.transaction() as db:
            async with db.execute(
                "SELECT COUNT(*) FROM quota_events WHERE user_key=? AND at>=?", (user_key, since)
            ) as cur:
                row = await cur.fetchone()
            if row is not None and int(row[0]) >= limit:
                return False
            await db.execute("INSERT INTO quota_events(user_key, at) VALUES (?,?)", (user_key, now_iso()))
        return True

    async def quota_add(self, user_key: str) -> None:
        await self.execute("INSERT INTO quota_events(user_key, at) VALUES (?,?)", (user_key, now_iso()))

    async def quota_oldest(self, user_key: str, window: timedelta = timedelta(hours=1)) -> datetime | None:
        since = (datetime.now(UTC) - window).isoformat(timespec="seconds")
        row = await self.fetchone(
            "SELECT MIN(at) FROM quota_events WHERE user_key=? AND at>=?", (user_key, since)
        )
        return datetime.fromisoformat(row[0]) if row and row[0] else None
