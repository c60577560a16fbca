"""The connection, its pragmas, migrations and the transaction helper."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from bot.store.migrations import MIGRATIONS

log = logging.getLogger(__name__)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


class StoreBase:
    """Owns the aiosqlite connection. Mixins add the queries of one concern each."""

    def __init__(self, db: aiosqlite.Connection, path: Path | str) -> None:
        self.db = db
        self.path = path
        # aiosqlite runs one connection on one thread, but two coroutines could still
        # interleave statements of their transactions; this lock keeps them apart.
        self._tx_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str) -> Any:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(str(path), isolation_level=None)
        db.row_factory = aiosqlite.Row
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
            store = cls(db, path)
            await store.migrate()
        except BaseException:
            # aiosqlite's thread is not a daemon: an unclosed connection keeps the process alive.
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def schema_version(self) -> int:
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        async with self.db.execute("SELECT MAX(version) FROM schema_migrations") as cur:
            row = await cur.fetchone()
        return int(row[0] or 0) if row else 0

    async def migrate(self, target: int | None = None) -> list[int]:
        """Apply the missing migrations, each in its own transaction; return those applied."""
        current = await self.schema_version()
        applied = []
        for version, description, sql in MIGRATIONS:
            if version <= current or (target is not None and version > target):
                continue
            async with self.transaction():
                # Another process may have applied this step since we looked.
                async with self.db.execute(
                    "SELECT 1 FROM schema_migrations WHERE version=?", (version,)
                ) as cur:
                    if await cur.fetchone() is not None:
                        continue
                for statement in _statements(sql):
                    await self.db.execute(statement)
                await self.db.execute(
                    "INSERT INTO schema_migrations(version, description, applied_at) VALUES (?,?,?)",
                    (version, description, now_iso()),
                )
            log.info("database migrated to version %d (%s)", version, description)
            applied.append(version)
        return applied

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._tx_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            else:
                await self.db.execute("COMMIT")

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async with self.db.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        async with self.db.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement (atomic on its own in autocommit mode); return lastrowid."""
        async with self._tx_lock:
            async with self.db.execute(sql, tuple(params)) as cur:
                return cur.lastrowid or 0

    async def get_meta(self, key: str) -> str | None:
        row = await self.fetchone("SELECT value FROM meta WHERE key=?", (key,))
        return row["value"] if row else None

    async def set_meta(self, key: str, value: str) -> None:
        await self.execute(
            "INSERT INTO meta(key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    async def record_failure(self, kind: str, detail: str) -> None:
        await self.execute(
            "INSERT INTO failures(at, kind, detail) VALUES (?,?,?)", (now_iso(), kind, detail[:500])
        )

    async def recent_failures(self, limit: int = 5) -> list[tuple[str, str, str]]:
        rows = await self.fetchall(
            "SELECT at, kind, detail FROM failures ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [(r["at"], r["kind"], r["detail"]) for r in rows]


def _statements(sql: str) -> list[str]:
    """Split a migration script on ';' at line ends (our scripts hold no triggers)."""
    parts, buf = [], []
    for line in sql.splitlines():
        code = line.split("--", 1)[0]
        buf.append(code)
        if code.rstrip().endswith(";"):
            parts.append("\n".join(buf).strip().rstrip(";"))
            buf = []
    tail = "\n".join(buf).strip()
    if tail:
        parts.append(tail)
    return [p for p in parts if p]
