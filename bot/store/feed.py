"""The feed's state: topics to match, processed announcements, matches, and the delivery ledger."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from bot.models import Chat, Delivery, DeliveryStatus, Paper
from bot.store.base import StoreBase, now_iso
from bot.store.chats import _CHAT_COLS, chat_from_row
from bot.store.papers import _PAPER_COLS, paper_from_row

# SQLite's default limit on host parameters was 999 before 3.32; stay well under it.
_CHUNK = 500


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row["id"],
        chat_pk=row["chat_pk"],
        arxiv_id=row["arxiv_id"],
        announced=date.fromisoformat(row["announced"]),
        status=DeliveryStatus(row["status"]),
        topic_query=row["topic_query"],
        attempts=row["attempts"],
        next_attempt_at=_time(row["next_attempt_at"]),
        first_failed_at=_time(row["first_failed_at"]),
    )


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


_DELIVERY_COLS = "id, chat_pk, arxiv_id, announced, status, topic_query, attempts, next_attempt_at, first_failed_at"


class FeedStore(StoreBase):
    # --- polling ------------------------------------------------------------------------

    async def active_topics(self) -> list[tuple[int, str, str]]:
        """(topic id, query, newest subscription time) of every query an active chat follows."""
        rows = await self.fetchall(
            "SELECT t.id, t.query, MAX(s.created_at) FROM topics t "
            "JOIN subscriptions s ON s.topic_id=t.id JOIN chats c ON c.id=s.chat_pk "
            "WHERE c.active=1 GROUP BY t.id ORDER BY t.id"
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def newest_subscription_id(self) -> int:
        row = await self.fetchone("SELECT COALESCE(MAX(id), 0) FROM subscriptions")
        return int(row[0]) if row else 0

    async def processed_feeds(self, day: date) -> dict[str, str]:
        """Feeds whose announcement of `day` was processed, with when."""
        rows = await self.fetchall(
            "SELECT feed, fetched_at FROM announcements WHERE announced=?", (day.isoformat(),)
        )
        return {r[0]: r[1] for r in rows}

    async def known_papers(self, ids: Iterable[str]) -> dict[str, str | None]:
        """Stored papers among `ids`, with their announcement date (None if never listed)."""
        found: dict[str, str | None] = {}
        for part in _chunks(list(dict.fromkeys(ids))):
            rows = await self.fetchall(
                f"SELECT arxiv_id, announced FROM papers WHERE arxiv_id IN ({','.join('?' * len(part))})", part
            )
            found.update((r[0], r[1]) for r in rows)
        return found

    async def papers_by_id(self, ids: Iterable[str]) -> dict[str, Paper]:
        found: dict[str, Paper] = {}
        for part in _chunks(list(dict.fromkeys(ids))):
            rows = await self.fetchall(
                f"SELECT {_PAPER_COLS} FROM papers WHERE arxiv_id IN ({','.join('?' * len(part))})", part
            )
            found.update((r["arxiv_id"], paper_from_row(r)) for r in rows)
        return found

    async def add_matches(self, rows: Iterable[tuple[int, str, date]]) -> int:
        """Record (topic, paper, announcement) matches; a topic matches a paper once. Returns how many are new."""
        async with self.transaction() as db:
            before = db.total_changes
            # A topic whose last subscriber left during the poll is gone: skip its matches
            # (ON CONFLICT does not cover foreign-key failures, which would abort the whole poll).
            # The casts type the selected parameters for PostgreSQL, which would take them as text.
            await db.executemany(
                "INSERT INTO matches(topic_id, arxiv_id, announced) "
                "SELECT CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS TEXT) "
                "WHERE EXISTS (SELECT 1 FROM topics WHERE id=?) ON CONFLICT DO NOTHING",
                [(t, a, d.isoformat(), t) for t, a, d in rows],
            )
            return db.total_changes - before

    # --- pushing ------------------------------------------------------------------------

    async def push_states(self) -> list[tuple[Chat, date | None]]:
        """Active chats with the announcement they were last pushed."""
        rows = await self.fetchall(f"SELECT {_CHAT_COLS}, last_pushed FROM chats WHERE active=1 ORDER BY id")
        return [
            (chat_from_row(r), date.fromisoformat(r["last_pushed"]) if r["last_pushed"] else None) for r in rows
        ]

    async def set_last_pushed(self, chat_pk: int, day: date) -> None:
        """Mark the push of `day` done, unless a match for the chat arrived meanwhile (a poll
        running beside the push stored a paper the API was late with): then it stays due.
        One statement, so a poll's `record_late` lands either before it (and this does nothing)
        or after it (and makes the chat due again)."""
        await self.execute(
            "UPDATE chats SET last_pushed=? WHERE id=? AND (last_pushed IS NULL OR last_pushed<?) "
            "AND NOT EXISTS (SELECT 1 FROM subscriptions s JOIN matches m ON m.topic_id=s.topic_id "
            "WHERE s.chat_pk=chats.id AND m.announced<=? AND (s.since IS NULL OR m.announced>=s.since) "
            "AND (chats.backlog_from IS NULL OR m.announced>=chats.backlog_from) "
            "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.chat_pk=s.chat_pk AND d.arxiv_id=m.arxiv_id))",
            (day.isoformat(), chat_pk, day.isoformat(), day.isoformat()),
        )

    async def unledgered_matches(self, chat_pk: int, latest: date) -> list[tuple[str, date, str]]:
        """(paper, announcement, topic query) the chat's topics matched up to `latest`, from each
        subscription's `since` on, that have no ledger row yet; a paper matched by two topics comes twice."""
        rows = await self.fetchall(
            "SELECT m.arxiv_id, m.announced, t.query FROM subscriptions s "
            "JOIN matches m ON m.topic_id=s.topic_id JOIN topics t ON t.id=s.topic_id "
            "JOIN chats c ON c.id=s.chat_pk "
            "WHERE s.chat_pk=? AND m.announced<=? AND (s.since IS NULL OR m.announced>=s.since) "
            "AND (c.backlog_from IS NULL OR m.announced>=c.backlog_from) "
            "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.chat_pk=s.chat_pk AND d.arxiv_id=m.arxiv_id) "
            "ORDER BY m.announced, m.arxiv_id, t.query",
            (chat_pk, latest.isoformat()),
        )
        return [(r[0], date.fromisoformat(r[1]), r[2]) for r in rows]

    async def matches_on(self, chat_pk: int, day: date) -> list[str]:
        """Papers the chat's topics matched in the announcement of `day`, whatever was sent."""
        rows = await self.fetchall(
            "SELECT DISTINCT m.arxiv_id FROM subscriptions s JOIN matches m ON m.topic_id=s.topic_id "
            "WHERE s.chat_pk=? AND m.announced=? ORDER BY m.arxiv_id",
            (chat_pk, day.isoformat()),
        )
        return [r[0] for r in rows]

    async def subscribed_after(self, chat_pk: int, at: str) -> bool:
        row = await self.fetchone(
            "SELECT 1 FROM subscriptions WHERE chat_pk=? AND created_at>? LIMIT 1", (chat_pk, at)
        )
        return row is not None

    # --- the delivery ledger ------------------------------------------------------------

    async def ledger_add(self, chat_pk: int, rows: Iterable[tuple[str, date, str]]) -> None:
        """Write (paper, announcement, topic queries) rows as pending; existing rows are kept as they are."""
        at = now_iso()
        async with self.transaction() as db:
            await db.executemany(
                "INSERT INTO deliveries(chat_pk, arxiv_id, announced, topic_query, status, created_at) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(chat_pk, arxiv_id) DO NOTHING",
                [(chat_pk, a, d.isoformat(), q, DeliveryStatus.PENDING, at) for a, d, q in rows],
            )

    async def ledger_open(self, chat_pk: int) -> list[Delivery]:
        """The chat's rows not sent yet (pending, or left `sending` by a crash), in push order."""
        rows = await self.fetchall(
            f"SELECT {_DELIVERY_COLS} FROM deliveries "
            "WHERE chat_pk=? AND status IN (?,?) ORDER BY announced, arxiv_id",
            (chat_pk, DeliveryStatus.PENDING, DeliveryStatus.SENDING),
        )
        return [_delivery(r) for r in rows]

    async def ledger_sent(self, ids: list[int]) -> None:
        await self._ledger_update(ids, "status=?, sent_at=?, error=NULL", (DeliveryStatus.SENT, now_iso()))

    async def _ledger_update(self, ids: list[int], assignments: str, params: tuple[Any, ...]) -> None:
        for part in _chunks(ids):
            await self.execute(
                f"UPDATE deliveries SET {assignments} WHERE id IN ({','.join('?' * len(part))})", (*params, *part)
            )

    async def ledger_rows(self, chat_pk: int) -> list[Delivery]:
        rows = await self.fetchall(
            f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE chat_pk=? ORDER BY announced, arxiv_id",
            (chat_pk,),
        )
        return [_delivery(r) for r in rows]

    async def count_pending_deliveries(self) -> int:
        row = await self.fetchone(
            "SELECT COUNT(*) FROM deliveries WHERE status IN (?,?)", (DeliveryStatus.PENDING, DeliveryStatus.SENDING)
        )
        return int(row[0]) if row else 0
