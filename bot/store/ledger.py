"""The delivery ledger's state machine: claims, retries with backoff, given-up rows, push headers,
and pruning of the failure and quota logs.

A message (a paper's post, a list of papers, a push's header) is one row that moves
pending -> sending -> sent, or back to pending with a `next_attempt_at` after a failure, or to
given_up. The policy (how long to wait, when to give up) is delivery.py's; this module only
writes what it decides. Times are ISO-8601 UTC text, computed by the caller's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from bot.models import DeliveryStatus, Platform
from bot.store.base import StoreBase, now_iso

_CHUNK = 500
_OPEN = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class HeaderRow:
    id: int
    chat_pk: int
    announced: date
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    first_failed_at: datetime | None


@dataclass
class GivenUp:
    platform: Platform
    chat_id: str
    what: str  # an arXiv id, or "header of YYYY-MM-DD"
    error: str
    since: datetime | None  # first failure


class LedgerStore(StoreBase):
    async def ledger_reset_in_flight(self) -> int:
        """Rows left `sending` (the process died mid-send) go back to pending; return how many.

        Called by the one pusher that holds the push lock, before it sends anything: a row still
        `sending` then cannot be another pusher's message in flight.
        """
        n = 0
        for table in ("deliveries", "push_headers"):
            n += len(
                await self.returning(
                    f"UPDATE {table} SET status=? WHERE status=? RETURNING id",
                    (DeliveryStatus.PENDING, DeliveryStatus.SENDING),
                )
            )
        return n


    async def ledger_claim(self, ids: list[int]) -> list[int]:
        """Mark pending rows `sending` (one more attempt) and return those this call claimed.

        Conditional on the row still being pending, so two pushers that raced past the push lock
        cannot both send it.
        """
        claimed: list[int] = []
        for start in range(0, len(ids), _CHUNK):
            part = ids[start : start + _CHUNK]
            rows = await self.returning(
                f"UPDATE deliveries SET status=?, attempts=attempts+1 "
                f"WHERE id IN ({','.join('?' * len(part))}) AND status=? RETURNING id",
                (DeliveryStatus.SENDING, *part, DeliveryStatus.PENDING),
            )
            got = {int(r[0]) for r in rows}
            claimed += [i for i in part if i in got]
        return claimed

    async def ledger_failed(
        self, ids: list[int], error: str, *, retry_at: datetime, first_failed: datetime, give_up: bool
    ) -> None:
        """A send of these rows failed: pending again from `retry_at` on, or given up."""
        status = DeliveryStatus.GIVEN_UP if give_up else DeliveryStatus.PENDING
        await self._update(
            "deliveries",
            ids,
            "status=?, error=?, next_attempt_at=?, first_failed_at=COALESCE(first_failed_at, ?)",
            (status, error[:500], _iso(retry_at), _iso(first_failed)),
        )

    async def ledger_defer(self, ids: list[int], until: datetime) -> None:
        """Hold pending rows back until `until` (the platform is down; they were not tried)."""
        await self._update(
            "deliveries",
            ids,
            "next_attempt_at=CASE WHEN next_attempt_at IS NULL OR next_attempt_at<? THEN ? ELSE next_attempt_at END",
            (_iso(until), _iso(until)),
            only=DeliveryStatus.PENDING,
        )

    async def ledger_released(self, ids: list[int], error: str) -> None:
        """Claimed rows that were not sent through no fault of theirs (the chat is gone): pending, no penalty."""
        await self._update("deliveries", ids, "status=?, error=?", (DeliveryStatus.PENDING, error[:500]))

    async def _update(
        self, table: str, ids: list[int], assignments: str, params: tuple[Any, ...], only: str | None = None
    ) -> None:
        extra = " AND status=?" if only else ""
        for start in range(0, len(ids), _CHUNK):
            part = ids[start : start + _CHUNK]
            await self.execute(
                f"UPDATE {table} SET {assignments} WHERE id IN ({','.join('?' * len(part))}){extra}",
                (*params, *part, *((only,) if only else ())),
            )

    # --- headers ------------------------------------------------------------------------

    async def header_row(self, chat_pk: int, day: date, *, create: bool) -> HeaderRow | None:
        """The chat's header for the push of `day`; with `create`, written pending when missing."""
        if create:
            await self.execute(
                "INSERT INTO push_headers(chat_pk, announced, status, created_at) VALUES (?,?,?,?) "
                "ON CONFLICT(chat_pk, announced) DO NOTHING",
                (chat_pk, day.isoformat(), DeliveryStatus.PENDING, now_iso()),
            )
        row = await self.fetchone(
            "SELECT id, chat_pk, announced, status, attempts, next_attempt_at, first_failed_at "
            "FROM push_headers WHERE chat_pk=? AND announced=?",
            (chat_pk, day.isoformat()),
        )
        if row is None:
            return None
        return HeaderRow(
            row["id"], row["chat_pk"], date.fromisoformat(row["announced"]), DeliveryStatus(row["status"]),
            row["attempts"], _time(row["next_attempt_at"]), _time(row["first_failed_at"]),
        )

    async def header_claim(self, header_id: int) -> bool:
        rows = await self.returning(
            "UPDATE push_headers SET status=?, attempts=attempts+1 WHERE id=? AND status=? RETURNING id",
            (DeliveryStatus.SENDING, header_id, DeliveryStatus.PENDING),
        )
        return bool(rows)

    async def header_sent(self, header_id: int, at: datetime) -> None:
        await self.execute(
            "UPDATE push_headers SET status=?, sent_at=?, error=NULL WHERE id=?",
            (DeliveryStatus.SENT, _iso(at), header_id),
        )

    async def header_failed(
        self, header_id: int, error: str, *, retry_at: datetime, first_failed: datetime, give_up: bool
    ) -> None:
        await self._update(
            "push_headers",
            [header_id],
            "status=?, error=?, next_attempt_at=?, first_failed_at=COALESCE(first_failed_at, ?)",
            (DeliveryStatus.GIVEN_UP if give_up else DeliveryStatus.PENDING, error[:500], _iso(retry_at), _iso(first_failed)),
        )

    async def header_released(self, header_id: int) -> None:
        await self._update("push_headers", [header_id], "status=?", (DeliveryStatus.PENDING,))

    # --- status and housekeeping --------------------------------------------------------

    async def given_up(self, limit: int = 5) -> tuple[int, list[GivenUp]]:
        """How many messages were given up, and the newest `limit` of them with their reasons."""
        count = 0
        for table in ("deliveries", "push_headers"):
            row = await self.fetchone(f"SELECT COUNT(*) FROM {table} WHERE status=?", (DeliveryStatus.GIVEN_UP,))
            count += int(row[0]) if row else 0
        # COALESCE: a row given up without a retry time (its chat was switched off) sorts last on
        # both backends; PostgreSQL puts NULL first in a descending order, SQLite last.
        rows = await self.fetchall(
            "SELECT c.platform, c.chat_id, d.arxiv_id AS what, d.error, d.first_failed_at, "
            "COALESCE(d.next_attempt_at, '') "
            "FROM deliveries d JOIN chats c ON c.id=d.chat_pk WHERE d.status=? "
            "UNION ALL "
            "SELECT c.platform, c.chat_id, 'header of ' || h.announced, h.error, h.first_failed_at, "
            "COALESCE(h.next_attempt_at, '') "
            "FROM push_headers h JOIN chats c ON c.id=h.chat_pk WHERE h.status=? "
            "ORDER BY 6 DESC LIMIT ?",
            (DeliveryStatus.GIVEN_UP, DeliveryStatus.GIVEN_UP, limit),
        )
        return count, [
            GivenUp(Platform(r[0]), r[1], r[2], r[3] or "", _time(r[4])) for r in rows
        ]

    async def prune_logs(self, failures_before: datetime, quota_before: datetime) -> int:
        """Delete failure-log rows and quota events older than these times; return how many."""
        failures = await self.returning("DELETE FROM failures WHERE at<? RETURNING id", (_iso(failures_before),))
        quota = await self.returning("DELETE FROM quota_events WHERE at<? RETURNING at", (_iso(quota_before),))
        return len(failures) + len(quota)

