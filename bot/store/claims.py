"""Work that several processes on one database must do once: claims on summaries and deliveries.

Both kinds are plain rows and conditional statements, so they work the same on SQLite and
PostgreSQL: a claim row inserted with `ON CONFLICT DO NOTHING` (whoever inserted it owns it until
it expires), and a conditional `UPDATE ... RETURNING id` that moves only rows still in the
expected state (PostgreSQL re-checks the condition on a row another transaction just changed, so
two claimers never both get it).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.store.base import StoreBase

# (arxiv_id, version, language, model_key, prompt_version): the summaries table's key
SummaryKey = tuple[str, int, str, str, str]

_KEY_WHERE = "arxiv_id=? AND version=? AND language=? AND model=? AND prompt_version=?"


def _iso(moment: datetime) -> str:
    # One fixed format (UTC, microseconds), so that text order is time order.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class ClaimStore(StoreBase):
    async def claim_summary(self, key: SummaryKey, owner: str, ttl: timedelta, now: datetime) -> bool:
        """Claim the making of the summary `key` for `owner` until `now + ttl`.

        True when the claim is now `owner`'s: it was free, had expired before `now`, or was
        `owner`'s already (then it is extended). False while another owner's claim runs.
        """
        expires = _iso(now + ttl)
        async with self.transaction() as db:
            async with db.execute(
                "INSERT INTO summary_claims(arxiv_id, version, language, model, prompt_version, owner, expires_at) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (*key, owner, expires),
            ) as cur:
                if cur.rowcount == 1:
                    return True
            async with db.execute(
                f"UPDATE summary_claims SET owner=?, expires_at=? WHERE {_KEY_WHERE} AND (expires_at<? OR owner=?)",
                (owner, expires, *key, _iso(now), owner),
            ) as cur:
                return cur.rowcount == 1

    async def summary_claim(self, key: SummaryKey) -> tuple[str, datetime] | None:
        """(owner, expiry) of the claim on `key`, if there is one."""
        row = await self.fetchone(f"SELECT owner, expires_at FROM summary_claims WHERE {_KEY_WHERE}", key)
        return (row[0], datetime.fromisoformat(row[1])) if row else None

    async def release_summary_claim(self, key: SummaryKey, owner: str) -> None:
        """Drop `owner`'s claim on `key` (another owner's, taken over meanwhile, stays)."""
        await self.execute(f"DELETE FROM summary_claims WHERE {_KEY_WHERE} AND owner=?", (*key, owner))
