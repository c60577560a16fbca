"""What /healthz and /metrics ask the database: that it answers, and the ledger by status."""

from __future__ import annotations

from bot.store.base import StoreBase


class HealthStore(StoreBase):
    async def ping(self) -> None:
        """Raises when the database does not answer `SELECT 1` (closed, gone, unreachable)."""
        await self.fetchone("SELECT 1")

    async def delivery_counts(self) -> dict[str, int]:
        """Rows of the delivery ledger by status, e.g. {"pending": 3, "sent": 120}; whatever
        statuses exist are counted, so a new status shows up without a change here."""
        rows = await self.fetchall("SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status")
        return {str(r["status"]): int(r["n"]) for r in rows}
