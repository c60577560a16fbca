from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bot.models import Chat, ChatKind, Paper, Platform
from bot.store import Store
from bot.store.backend import open_backend
from bot.store.migrations import LATEST, MIGRATIONS


def _paper(version: int = 1) -> Paper:
    return Paper(
        arxiv_id="2405.01872",
        version=version,
        title="Defect Image Sample Generation",
        authors=["Yichun Tai", "Kun Yang"],
        abstract="We propose StableSDG.",
        categories=["cs.CV", "cs.AI"],
        published=datetime(2024, 5, 3, 8, 37, 25, tzinfo=UTC),
        updated=datetime(2024, 5, 3, 8, 37, 25, tzinfo=UTC),
        abs_url="http://arxiv.org/abs/2405.01872v1",
        pdf_url="http://arxiv.org/pdf/2405.01872v1",
    )


async def test_fresh_database_has_wal_foreign_keys_and_latest_schema(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "p.db") as store:
        assert await store.schema_version() == LATEST
        row = await store.fetchone("PRAGMA journal_mode")
        assert row[0] == "wal"
        row = await store.fetchone("PRAGMA foreign_keys")
        assert row[0] == 1


async def test_migrating_an_existing_database_keeps_its_rows(db_target: str) -> None:
    # A database as version 1 of the project left it, with a chat, a topic and a paper.
    store = Store(await open_backend(db_target), db_target)
    assert await store.migrate(target=1) == [1]
    chat = await store.ensure_chat(Chat(Platform.TELEGRAM, "42", ChatKind.PRIVATE, language="zh"))
    await store.add_topic(chat.id, "cat:cs.CV")
    await store.upsert_paper(_paper())
    assert (await store.fetchone("SELECT MAX(version) FROM schema_migrations"))[0] == 1
    await store.close()

    async with await Store.open(db_target) as store:
        assert await store.schema_version() == LATEST == MIGRATIONS[-1][0]
        chat2 = await store.get_chat(Platform.TELEGRAM, "42")
        assert chat2 is not None and chat2.language == "zh"
        assert [t.query for t in await store.list_topics(chat2.id)] == ["cat:cs.CV"]
        assert (await store.get_paper("2405.01872")).title == "Defect Image Sample Generation"
        await store.quota_add("telegram:1")  # a table that only version 2 has
        assert await store.quota_used("telegram:1") == 1


async def test_older_version_never_overwrites_newer(db_target: str) -> None:
    async with await Store.open(db_target) as store:
        assert await store.upsert_paper(_paper(2)) is True
        assert await store.upsert_paper(_paper(1)) is False
        assert (await store.get_paper("2405.01872")).version == 2
        assert await store.get_paper("2405.01872", 1) is None


async def test_topics_are_shared_rows_and_chat_migration_keeps_them(db_target: str) -> None:
    async with await Store.open(db_target) as store:
        a = await store.ensure_chat(Chat(Platform.TELEGRAM, "-1", ChatKind.GROUP))
        b = await store.ensure_chat(Chat(Platform.TELEGRAM, "-2", ChatKind.GROUP))
        t1, created = await store.add_topic(a.id, "cat:cs.CV")
        assert created
        again, created = await store.add_topic(a.id, "cat:cs.CV")
        assert not created and again.id == t1.id
        await store.add_topic(b.id, "cat:cs.CV")
        row = await store.fetchone("SELECT COUNT(*) FROM topics")
        assert row[0] == 1
        await store.update_chat_settings(a.id, language="zh", max_papers=5)
        await store.migrate_chat(Platform.TELEGRAM, "-1", "-1001")
        moved = await store.get_chat(Platform.TELEGRAM, "-1001")
        assert moved is not None and moved.id == a.id and moved.kind == ChatKind.SUPERGROUP
        assert (moved.language, moved.max_papers) == ("zh", 5)
        assert [t.query for t in await store.list_topics(moved.id)] == ["cat:cs.CV"]
        assert await store.get_chat(Platform.TELEGRAM, "-1") is None
        assert await store.remove_topics(b.id, None) == 1
        assert await store.remove_topics(a.id, None) == 1
        row = await store.fetchone("SELECT COUNT(*) FROM topics")
        assert row[0] == 0


def test_a_file_that_is_not_a_database_is_one_error_line_and_the_process_ends(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import subprocess_env

    bad = tmp_path / "notes.txt"
    bad.write_text("not a database, just text " * 100)
    result = subprocess.run(
        [sys.executable, "-m", "bot", "status"], cwd=tmp_path, capture_output=True, text=True, timeout=30,
        env=subprocess_env({"PAPERBOT_DB": str(bad)}),
    )
    assert result.returncode == 1 and "file is not a database" in result.stderr


async def test_a_topic_removed_during_a_poll_does_not_abort_the_others(db_target: str) -> None:
    from datetime import date

    async with await Store.open(db_target) as store:
        await store.upsert_paper(_paper())
        a = await store.ensure_chat(Chat(Platform.TELEGRAM, "1", ChatKind.PRIVATE))
        kept, _ = await store.add_topic(a.id, "cat:cs.CV")
        gone, _ = await store.add_topic(a.id, "ti:defect")
        topic_ids = {r[1]: r[0] for r in await store.fetchall("SELECT id, query FROM topics")}
        await store.remove_topics(a.id, [gone.id])  # the user unsubscribes while the poll matches
        day = date(2024, 5, 6)
        added = await store.add_matches(
            [(topic_ids["cat:cs.CV"], "2405.01872", day), (topic_ids["ti:defect"], "2405.01872", day)]
        )
        assert added == 1
        rows = await store.fetchall("SELECT topic_id FROM matches")
        assert [r[0] for r in rows] == [topic_ids["cat:cs.CV"]]
        assert kept.query == "cat:cs.CV"


async def test_the_quota_cannot_be_overrun_by_concurrent_requests(db_target: str) -> None:
    import asyncio

    async with await Store.open(db_target) as store:
        taken = await asyncio.gather(*(store.quota_take("telegram:7", 3) for _ in range(10)))
        assert sum(taken) == 3 and await store.quota_used("telegram:7") == 3


async def test_mixin_code_in_the_aiosqlite_style_runs_on_both_backends(db_target: str) -> None:
    """The calls store mixins make inside `transaction()`, with the same results on each backend."""
    async with await Store.open(db_target) as store:
        async with store.transaction() as db:
            cur = await db.execute(
                "INSERT INTO failures(at, kind, detail) VALUES (?,?,?) RETURNING id", ("t0", "poll", "x")
            )
            first = (await cur.fetchone())["id"]
            before = db.total_changes
            many = await db.executemany(
                "INSERT INTO failures(at, kind, detail) VALUES (?,?,?)", [("t1", "push", "y"), ("t2", "push", "z")]
            )
            assert many.rowcount == 2 and db.total_changes - before == 2
            async with db.execute("UPDATE failures SET detail=? WHERE kind=?", ("w", "push")) as cur:
                assert cur.rowcount == 2
            async with db.execute("SELECT id, kind FROM failures WHERE id>? ORDER BY id", (first,)) as cur:
                rows = await cur.fetchall()
            assert [(r[1], r["kind"]) for r in rows] == [("push", "push")] * 2
            assert [r[0] for r in rows] == [first + 1, first + 2]
            assert len(await db.execute_fetchall("SELECT * FROM failures")) == 3
        # Outside a transaction: single statements, and a row count from execute().
        assert await store.execute("DELETE FROM failures WHERE kind=?", ("push",)) == 2
        assert [tuple(r) for r in await store.fetchall("SELECT kind, detail FROM failures")] == [("poll", "x")]
        assert await store.recent_failures() == [("t0", "poll", "x")]
