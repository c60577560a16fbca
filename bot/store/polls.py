"""What a poll records: an announcement in one transaction, papers the API did not have yet, and
each feed's last listing (for topics subscribed on days without an announcement)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from bot.store.base import StoreBase, dumps, loads

_MATCH_SQL = (
    "INSERT INTO matches(topic_id, arxiv_id, announced) SELECT ?, ?, ? "
    # A topic whose last subscriber left during the poll is gone: skip its matches.
    "WHERE EXISTS (SELECT 1 FROM topics WHERE id=?) ON CONFLICT(topic_id, arxiv_id) DO NOTHING"
)


class PollStore(StoreBase):
    async def record_poll(
        self,
        *,
        matches: Iterable[tuple[int, str, date]],
        awaiting: Iterable[tuple[str, date, list[int]]],
        announcements: Iterable[tuple[list[str], date, int]],
        listings: Iterable[tuple[str, date, str, dict[str, Any]]],
        latest: date | None,
        at: str,
        seen_at: str,
    ) -> int:
        """Record one poll's announcements atomically; return how many (topic, paper) matches are new.

        - `matches`: (topic id, paper, announcement) of stored papers;
        - `awaiting`: (paper, announcement, topic ids) a listing announced and the API did not return;
        - `announcements`: (feeds, announcement, items listed): those feeds are processed for the
          topics subscribed to before `at`;
        - `listings`: (feed, announcement, arxiv id, item as JSON) to keep as the feed's last listing;
        - `latest`: the newest announcement seen; `last_announcement` moves forward to it;
        - `at`: the cycle's start (real time, as subscriptions are stamped); `seen_at`: the poller's
          clock, from which an awaited paper's week is counted.

        A poll stopped half way leaves either all of it or none: the next poll does it again.
        """
        listings = list(listings)
        async with self.transaction() as db:
            before = db.total_changes
            await db.executemany(_MATCH_SQL, [(t, a, d.isoformat(), t) for t, a, d in matches])
            new = db.total_changes - before
            awaiting = list(awaiting)
            # A paper awaited already (a topic subscribed since matched it again) is awaited for
            # its earlier topics too: replacing them lost it for their chats.
            merged: dict[str, tuple[date, set[int]]] = {a: (d, set(ts)) for a, d, ts in awaiting}
            for part in [list(merged)[i : i + 500] for i in range(0, len(merged), 500)]:
                async with db.execute(
                    f"SELECT arxiv_id, topics FROM pending_papers WHERE arxiv_id IN ({','.join('?' * len(part))})",
                    part,
                ) as cur:
                    for row in await cur.fetchall():
                        merged[row[0]][1].update(loads(row[1], []))
            await db.executemany(
                "INSERT INTO pending_papers(arxiv_id, announced, first_seen, topics) VALUES (?,?,?,?) "
                "ON CONFLICT(arxiv_id) DO UPDATE SET topics=excluded.topics",
                [(a, d.isoformat(), seen_at, dumps(sorted(ts))) for a, (d, ts) in merged.items()],
            )
            for feeds, day, count in announcements:
                await db.executemany(
                    "INSERT INTO announcements(feed, announced, fetched_at, papers) VALUES (?,?,?,?) "
                    "ON CONFLICT(feed, announced) DO UPDATE SET fetched_at=excluded.fetched_at, papers=excluded.papers",
                    [(f, day.isoformat(), at, count) for f in feeds],
                )
            for feed, day in {(f, d) for f, d, _a, _i in listings}:
                await db.execute("DELETE FROM listing_items WHERE feed=? AND announced<>?", (feed, day.isoformat()))
            await db.executemany(
                "INSERT INTO listing_items(feed, announced, arxiv_id, item) VALUES (?,?,?,?) "
                "ON CONFLICT(feed, arxiv_id) DO UPDATE SET announced=excluded.announced, item=excluded.item",
                [(f, d.isoformat(), a, dumps(i)) for f, d, a, i in listings],
            )
            if latest is not None:
                # Last: a push reads the matches of this announcement only once they are all stored
                # (the transaction makes that so; the order keeps it so for a reader without one).
                await db.execute(
                    "INSERT INTO meta(key, value) VALUES ('last_announcement', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value WHERE excluded.value > meta.value",
                    (latest.isoformat(),),
                )
        return new

    async def awaiting_papers(self) -> list[tuple[str, date, datetime, list[int]]]:
        """(paper, announcement, first seen, topic ids) of announced papers the API did not have yet."""
        rows = await self.fetchall("SELECT arxiv_id, announced, first_seen, topics FROM pending_papers ORDER BY arxiv_id")
        return [(r[0], date.fromisoformat(r[1]), datetime.fromisoformat(r[2]), loads(r[3], [])) for r in rows]

    async def record_late(
        self, matches: Iterable[tuple[int, str, date]], arrived: Iterable[str], dropped: Iterable[str]
    ) -> int:
        """Papers that reached the API after their listing: store their matches, stop waiting for
        them (and for `dropped`), and make the chats that follow them due again, so they go out
        with the next push rather than the next announcement's. Return the new matches."""
        matches = list(matches)
        async with self.transaction() as db:
            before = db.total_changes
            await db.executemany(_MATCH_SQL, [(t, a, d.isoformat(), t) for t, a, d in matches])
            new = db.total_changes - before
            done = [*arrived, *dropped]
            await db.executemany("DELETE FROM pending_papers WHERE arxiv_id=?", [(a,) for a in done])
            for topic, _paper, day in matches:
                await db.execute(
                    "UPDATE chats SET last_pushed=? WHERE last_pushed>=? "
                    "AND id IN (SELECT chat_pk FROM subscriptions WHERE topic_id=?)",
                    ((day - timedelta(days=1)).isoformat(), day.isoformat(), topic),
                )
        return new

    async def last_listing(self, feeds: Iterable[str]) -> tuple[date, list[dict[str, Any]]] | None:
        """The newest announcement stored for any of `feeds`, with its items (each once)."""
        feeds = list(feeds)
        marks = ",".join("?" * len(feeds))
        row = await self.fetchone(f"SELECT MAX(announced) FROM listing_items WHERE feed IN ({marks})", feeds)
        if row is None or row[0] is None:
            return None
        rows = await self.fetchall(
            f"SELECT arxiv_id, item FROM listing_items WHERE feed IN ({marks}) AND announced=? ORDER BY arxiv_id",
            (*feeds, row[0]),
        )
        items = {r[0]: loads(r[1]) for r in rows}
        return date.fromisoformat(row[0]), list(items.values())
