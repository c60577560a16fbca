"""Every method of the store mixins that were written on SQLite (delivery ledger, polls, buttons,
posts and answers, LLM usage, health) run once on each backend, with the same results.

The SQL of those mixins must be valid and mean the same on PostgreSQL (types, NULL handling,
text comparison, `ON CONFLICT` targets, `RETURNING`): each test here runs on SQLite and on a
throwaway PostgreSQL server (tests/pgserver.py), so a statement only SQLite accepts fails here.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from bot.models import Chat, ChatKind, DeliveryStatus, Platform
from bot.store import Store
from tests.test_store import _paper

DAY = date(2024, 5, 6)
T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


async def _chat(store: Store, chat_id: str = "100") -> Chat:
    return await store.ensure_chat(Chat(Platform.TELEGRAM, chat_id, ChatKind.PRIVATE, title="t"))


async def test_the_delivery_ledger_moves_rows_the_same_way_on_both_backends(db_target: str) -> None:
    async with await Store.open(db_target) as store:
        chat = await _chat(store)
        assert chat.id is not None
        for n in (1, 2, 3):
            await store.upsert_paper(replace(_paper(), arxiv_id=f"2405.0000{n}"), DAY)
        await store.ledger_add(chat.id, [("2405.00001", DAY, "cat:cs.CV"), ("2405.00002", DAY, "cat:cs.CV")])
        await store.ledger_add(chat.id, [("2405.00003", DAY, "cat:cs.CV")])
        ids = [d.id for d in await store.ledger_open(chat.id)]
        assert len(ids) == 3 and await store.count_pending_deliveries() == 3

        assert await store.ledger_claim(ids[:2]) == ids[:2]
        assert await store.ledger_claim(ids[:2]) == []  # already claimed: nobody gets them twice
        assert await store.ledger_reset_in_flight() == 2
        assert await store.ledger_claim(ids) == ids

        await store.ledger_failed(
            [ids[0]], "HTTP 502", retry_at=T0 + timedelta(minutes=5), first_failed=T0, give_up=False
        )
        await store.ledger_failed(
            [ids[0]], "HTTP 502 again", retry_at=T0 + timedelta(minutes=9), first_failed=T0 + timedelta(hours=1),
            give_up=False,
        )
        await store.ledger_failed([ids[1]], "chat gone" * 100, retry_at=T0, first_failed=T0, give_up=True)
        await store.ledger_released([ids[2]], "the chat is gone")
        await store.ledger_defer([ids[0], ids[2]], T0 + timedelta(minutes=7))
        rows = {d.id: d for d in await store.ledger_rows(chat.id)}
        raw = {
            r["id"]: r
            for r in await store.fetchall(
                "SELECT id, status, attempts, error, next_attempt_at, first_failed_at FROM deliveries"
            )
        }
        # The later failure keeps the first failure's time; a defer never moves a row earlier.
        assert raw[ids[0]]["status"] == "pending" and raw[ids[0]]["error"] == "HTTP 502 again"
        assert raw[ids[0]]["first_failed_at"] == "2024-05-06T09:00:00+00:00"
        assert raw[ids[0]]["next_attempt_at"] == "2024-05-06T09:09:00+00:00"
        assert raw[ids[2]]["next_attempt_at"] == "2024-05-06T09:07:00+00:00"
        assert raw[ids[1]]["status"] == "given_up" and len(raw[ids[1]]["error"]) == 500
        assert raw[ids[2]]["status"] == "pending" and raw[ids[2]]["attempts"] == 1
        assert rows[ids[0]].attempts == 2

        assert await store.ledger_claim([ids[0]]) == [ids[0]]
        await store.ledger_sent([ids[0]])
        assert (await store.delivery_counts()) == {"sent": 1, "given_up": 1, "pending": 1}

        header = await store.header_row(chat.id, DAY, create=True)
        assert header is not None and header.status == DeliveryStatus.PENDING and header.announced == DAY
        assert await store.header_row(chat.id, DAY + timedelta(days=1), create=False) is None
        assert (await store.header_row(chat.id, DAY, create=True)).id == header.id  # type: ignore[union-attr]
        assert await store.header_claim(header.id) and not await store.header_claim(header.id)
        await store.header_failed(header.id, "HTTP 429", retry_at=T0, first_failed=T0, give_up=False)
        await store.header_released(header.id)
        assert await store.header_claim(header.id)
        await store.header_failed(header.id, "blocked", retry_at=T0, first_failed=T0, give_up=True)

        count, newest = await store.given_up(limit=5)
        assert count == 2
        assert sorted(g.what for g in newest) == ["2405.00002", "header of 2024-05-06"]
        assert all(g.platform == Platform.TELEGRAM and g.chat_id == "100" for g in newest)

        header2 = await store.header_row(chat.id, DAY + timedelta(days=1), create=True)
        assert header2 is not None and await store.header_claim(header2.id)
        await store.header_sent(header2.id, T0)

        await store.record_failure("push", "boom")
        await store.quota_add("telegram:7")
        assert await store.prune_logs(datetime.now(UTC) + timedelta(days=1), datetime.now(UTC) + timedelta(days=1)) == 2


async def test_a_poll_is_recorded_and_read_back_the_same_way_on_both_backends(db_target: str) -> None:
    async with await Store.open(db_target) as store:
        chat = await _chat(store)
        assert chat.id is not None
        topic, _ = await store.add_topic(chat.id, "cat:cs.CV")
        await store.upsert_paper(_paper(), DAY)
        listing = [("cs.CV", DAY, "2405.01872", {"id": "2405.01872", "title": "ü 'quoted'"}),
                   ("cs.CV", DAY, "2405.09999", {"id": "2405.09999"})]
        new = await store.record_poll(
            matches=[(topic.id, "2405.01872", DAY), (topic.id, "2405.01872", DAY), (999_999, "2405.01872", DAY)],
            awaiting=[("2405.09999", DAY, [topic.id, 3])],
            announcements=[(["cs.CV", "cs.AI"], DAY, 2)],
            listings=listing,
            latest=DAY,
            at="2024-05-06T08:00:00+00:00",
            seen_at="2024-05-06T08:00:01+00:00",
        )
        assert new == 1
        assert await store.get_meta("last_announcement") == "2024-05-06"
        # An older announcement never moves it back.
        await store.record_poll(
            matches=[], awaiting=[], announcements=[], listings=[], latest=DAY - timedelta(days=3),
            at="x", seen_at="y",
        )
        assert await store.get_meta("last_announcement") == "2024-05-06"
        assert await store.awaiting_papers() == [
            ("2405.09999", DAY, datetime(2024, 5, 6, 8, 0, 1, tzinfo=UTC), sorted([3, topic.id]))
        ]
        got = await store.last_listing(["cs.CV", "cs.LG"])
        assert got is not None and got[0] == DAY
        assert sorted(i["id"] for i in got[1]) == ["2405.01872", "2405.09999"]
        assert await store.last_listing(["cs.LG"]) is None
        # A newer listing of the feed replaces the older one.
        await store.record_poll(
            matches=[], awaiting=[], announcements=[],
            listings=[("cs.CV", DAY + timedelta(days=1), "2405.11111", {"id": "2405.11111"})],
            latest=None, at="x", seen_at="y",
        )
        got = await store.last_listing(["cs.CV"])
        assert got is not None and [i["id"] for i in got[1]] == ["2405.11111"]

        await store.set_last_pushed(chat.id, DAY)
        late = await store.record_late([(topic.id, "2405.01872", DAY)], arrived=["2405.09999"], dropped=[])
        assert late == 0  # the match was stored already
        assert await store.awaiting_papers() == []


async def test_buttons_posts_answers_and_usage_the_same_way_on_both_backends(db_target: str) -> None:
    async with await Store.open(db_target) as store:
        assert await store.add_meta("k", "first") == "first"
        assert await store.add_meta("k", "second") == "first"

        assert await store.claim_button_post("telegram", "-100", "7", "breakdown")
        assert not await store.claim_button_post("telegram", "-100", "7", "breakdown")
        # A claim older than the timeout that never finished is taken over.
        assert await store.claim_button_post("telegram", "-100", "7", "breakdown", timeout=timedelta(seconds=-1))
        assert (await store.button_post("telegram", "-100", "7", "breakdown"))["posted_id"] is None  # type: ignore[index]
        await store.finish_button_post("telegram", "-100", "7", "breakdown", "8")
        assert not await store.claim_button_post("telegram", "-100", "7", "breakdown", timeout=timedelta(seconds=-1))
        await store.release_button_post("telegram", "-100", "7", "breakdown")  # finished: kept
        assert (await store.button_post("telegram", "-100", "7", "breakdown"))["posted_id"] == "8"  # type: ignore[index]
        assert await store.claim_button_post("discord", "5", "6", "breakdown")
        await store.release_button_post("discord", "5", "6", "breakdown")
        assert await store.button_post("discord", "5", "6", "breakdown") is None

        await store.add_post_messages(Platform.TELEGRAM, "-100", [7, "8"], "2405.01872", 2, "de")
        await store.add_post_messages(Platform.TELEGRAM, "-100", [8], "2405.01872", 3, "en")
        ref = await store.post_of_message(Platform.TELEGRAM, "-100", 7)
        assert ref is not None and ref.versioned_id == "2405.01872v2" and ref.language == "de"
        ref = await store.post_of_message(Platform.TELEGRAM, "-100", "8")
        assert ref is not None and ref.version == 3
        assert await store.post_of_message(Platform.DISCORD, "-100", 7) is None

        key = ("2405.01872", 2, "what is new", "en", "gemini:x", "p1")
        assert await store.get_answer(*key) is None
        await store.put_answer(*key, {"answer": "a"})
        await store.put_answer(*key, {"answer": "b"})
        assert await store.get_answer(*key) == {"answer": "b"} and await store.count_answers() == 1

        await store.record_llm_call("gemini:b", 10, 5, at=T0)
        await store.record_llm_call("gemini:b", 7, -3, at=T0 + timedelta(minutes=1))
        await store.record_llm_call("gemini:a", 1, 1, at=T0 - timedelta(days=1))
        usage = await store.llm_usage_since(T0 - timedelta(hours=1))
        assert [(u.model, u.calls, u.input_tokens, u.output_tokens) for u in usage] == [("gemini:b", 2, 17, 5)]
        assert all(type(v) is int for u in usage for v in (u.calls, u.input_tokens, u.output_tokens))

        await store.ping()
        assert await store.delivery_counts() == {}


async def test_status_lists_the_newest_given_up_messages_first_on_both_backends(db_target: str) -> None:
    """A row given up without a retry time (its chat was switched off) sorts as SQLite sorts NULL
    in a descending order, last: PostgreSQL puts NULL first, and `status` showed those rows
    instead of the newest failures."""
    async with await Store.open(db_target) as store:
        chat = await _chat(store)
        assert chat.id is not None
        for n in (1, 2):
            await store.upsert_paper(replace(_paper(), arxiv_id=f"2405.0000{n}"), DAY)
        await store.ledger_add(chat.id, [("2405.00001", DAY, "q"), ("2405.00002", DAY, "q")])
        ids = [d.id for d in await store.ledger_open(chat.id)]
        await store.execute("UPDATE deliveries SET status='given_up', error='the chat was switched off' WHERE id=?", (ids[0],))
        await store.ledger_claim([ids[1]])
        await store.ledger_failed([ids[1]], "HTTP 403", retry_at=T0, first_failed=T0, give_up=True)
        count, newest = await store.given_up(limit=1)
        assert count == 2 and [(g.what, g.error) for g in newest] == [("2405.00002", "HTTP 403")]
