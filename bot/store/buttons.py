"""What a button already did: at most one breakdown per post in shared chats, claimed atomically."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.store.base import StoreBase, now_iso

# A claim whose post never finished (the process died, the send failed) may be taken over after this.
CLAIM_TIMEOUT = timedelta(minutes=10)


class ButtonStore(StoreBase):
    async def add_meta(self, key: str, value: str) -> str:
        """Store `value` under `key` unless one is there already; return the stored value."""
        await self.execute(
            "INSERT INTO meta(key, value) VALUES (?,?) ON CONFLICT(key) DO NOTHING", (key, value)
        )
        stored = await self.get_meta(key)
        assert stored is not None
        return stored

    async def claim_button_post(
        self, platform: str, chat_id: str, message_id: str, kind: str, *, timeout: timedelta | None = None
    ) -> bool:
        """Claim the one post that a press on the button of message `message_id` may make.

        True for exactly one of any number of concurrent callers: the insert (or the takeover
        of a claim not refreshed for `timeout`, default CLAIM_TIMEOUT, that never finished) is one
        statement. The holder keeps it fresh with `touch_button_post` while it works.
        """
        now = datetime.now(UTC)
        stale = (now - (CLAIM_TIMEOUT if timeout is None else timeout)).isoformat(timespec="seconds")
        async with self.transaction() as db:
            async with db.execute(
                "INSERT INTO button_posts(platform, chat_id, message_id, kind, claimed_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(platform, chat_id, message_id, kind) DO UPDATE SET claimed_at=excluded.claimed_at "
                "WHERE button_posts.posted_id IS NULL AND button_posts.claimed_at < ? RETURNING id",
                (platform, chat_id, message_id, kind, now.isoformat(timespec="seconds"), stale),
            ) as cur:
                row = await cur.fetchone()
        return row is not None

    async def touch_button_post(self, platform: str, chat_id: str, message_id: str, kind: str) -> None:
        """Refresh an unfinished claim: its holder is alive (a new summary can outlast CLAIM_TIMEOUT)."""
        await self.execute(
            "UPDATE button_posts SET claimed_at=? WHERE platform=? AND chat_id=? AND message_id=? AND kind=? "
            "AND posted_id IS NULL",
            (now_iso(), platform, chat_id, message_id, kind),
        )

    async def button_post(self, platform: str, chat_id: str, message_id: str, kind: str) -> dict[str, Any] | None:
        """The claim on a post's button: {"posted_id": first message posted or None while posting, "claimed_at"}."""
        row = await self.fetchone(
            "SELECT posted_id, claimed_at FROM button_posts WHERE platform=? AND chat_id=? AND message_id=? AND kind=?",
            (platform, chat_id, message_id, kind),
        )
        return {"posted_id": row["posted_id"], "claimed_at": row["claimed_at"]} if row else None

    async def finish_button_post(self, platform: str, chat_id: str, message_id: str, kind: str, posted_id: str) -> None:
        await self.execute(
            "UPDATE button_posts SET posted_id=?, posted_at=? WHERE platform=? AND chat_id=? AND message_id=? AND kind=?",
            (posted_id, now_iso(), platform, chat_id, message_id, kind),
        )

    async def release_button_post(self, platform: str, chat_id: str, message_id: str, kind: str) -> None:
        """Give up an unfinished claim (the post failed or was refused), so a later press may try again."""
        await self.execute(
            "DELETE FROM button_posts WHERE platform=? AND chat_id=? AND message_id=? AND kind=? AND posted_id IS NULL",
            (platform, chat_id, message_id, kind),
        )
