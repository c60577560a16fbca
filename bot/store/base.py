"""The store's base: its backend, migrations, the transaction helper and the named try-lock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from bot.store.backend import Backend, SqliteBackend, open_backend
from bot.store.migrations import MIGRATIONS

log = logging.getLogger(__name__)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


class StoreBase:
    """Owns the database backend (SQLite or PostgreSQL). Mixins add the queries of one concern each.

    `self.db` runs single statements (each atomic on its own); `self.transaction()` yields the
    connection of one write transaction. Inside a transaction, `fetchone`/`fetchall`/`execute` of the
    same task use the transaction's connection, as they would on SQLite's single connection.
    """

    def __init__(self, db: aiosqlite.Connection | Backend, path: Path | str | None = None) -> None:
        if isinstance(db, aiosqlite.Connection):
            db = SqliteBackend(db, path if path is not None else ":memory:")
        self.backend: Backend = db
        self.path = path if path is not None else getattr(db, "path", None)
        self._in_tx: ContextVar[Any] = ContextVar(f"paperbot_tx_{id(self)}", default=None)

    def _tx_conn(self) -> Any | None:
        """The connection of this task's open transaction, if any. A task started inside a
        transaction inherits the context, not the transaction: it gets None."""
        tx = self._in_tx.get()
        if tx is None or not tx.open or tx.task is not asyncio.current_task():
            return None
        return tx.conn

    @property
    def db(self) -> Any:
        """The connection of the current transaction, else the one single statements run on."""
        return self._tx_conn() or self.backend.auto

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.backend.kind

    def describe(self) -> str:
        """The database for `status` and logs, without a password: `SQLite data/paperbot.db`."""
        return self.backend.describe()

    @classmethod
    async def open(cls, target: Path | str) -> Any:
        """Open `PAPERBOT_DB` (a file path, or a `postgresql://` URL) and apply missing migrations."""
        backend = await open_backend(target)
        store = cls(backend, target)
        try:
            await store.migrate()
        except BaseException:
            # aiosqlite's thread is not a daemon: an unclosed connection keeps the process alive.
            await backend.close()
            raise
        return store

    async def close(self) -> None:
        await self.backend.close()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def schema_version(self) -> int:
        return max(await self._applied_versions(), default=0)

    async def _applied_versions(self) -> set[int]:
        async with self.transaction() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            async with db.execute("SELECT version FROM schema_migrations") as cur:
                return {int(row[0]) for row in await cur.fetchall()}

    async def migrate(self, target: int | None = None) -> list[int]:
        """Apply the missing migrations, each in its own transaction; return those applied.

        The migrations are written for SQLite; on PostgreSQL each statement is translated at apply
        time (bot/store/backend.py), so a released step's text never changes.
        """
        # Every missing step, not only those above the newest: branches add steps in parallel, so a
        # database may know step 8 before step 5 is merged.
        done = await self._applied_versions()
        applied = []
        for version, description, sql in MIGRATIONS:
            if version in done or (target is not None and version > target):
                continue
            async with self.transaction() as db:
                # Another process may have applied this step since we looked.
                async with db.execute("SELECT 1 FROM schema_migrations WHERE version=?", (version,)) as cur:
                    if await cur.fetchone() is not None:
                        continue
                for statement in _statements(sql):
                    translated = self.backend.migration_statement(statement)
                    if translated is not None:
                        await db.execute(translated)
                await self.backend.after_migration(db)
                await db.execute(
                    "INSERT INTO schema_migrations(version, description, applied_at) VALUES (?,?,?)",
                    (version, description, now_iso()),
                )
            log.info("database migrated to version %d (%s)", version, description)
            applied.append(version)
        return applied

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """One write transaction, alone among all processes on the database (SQLite's
        BEGIN IMMEDIATE, PostgreSQL's advisory transaction lock); committed at the end of the
        block, rolled back if it raises. Nested use joins the outer transaction."""
        outer = self._tx_conn()
        if outer is not None:
            yield outer
            return
        async with self.backend.transaction() as conn:
            tx = _Tx(conn, asyncio.current_task())
            token = self._in_tx.set(tx)
            try:
                yield conn
            finally:
                tx.open = False
                self._in_tx.reset(token)

    def try_lock(self, name: str) -> contextlib.AbstractAsyncContextManager[bool]:
        """`async with store.try_lock("push") as got:` -- True if this process now holds the
        database-wide lock `name` until the block ends, False if another holder has it (no wait).

        SQLite: a file lock beside the database; PostgreSQL: a session advisory lock on a
        connection of its own. Either is dropped when the holding process dies.
        """
        return self.backend.try_lock(name)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        async with self.db.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any | None:
        async with self.db.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement (atomic on its own); return how many rows it changed.

        A new row's id comes from `RETURNING id` with `fetchone`: PostgreSQL has no lastrowid.
        """
        conn = self._tx_conn()
        # On SQLite's one connection a lone write must not slip into another task's transaction.
        async with contextlib.nullcontext() if conn is not None else self.backend.single():
            async with self.db.execute(sql, tuple(params)) as cur:
                return max(cur.rowcount, 0)

    async def returning(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        """One writing statement with RETURNING (atomic on its own); the rows it returned."""
        conn = self._tx_conn()
        async with contextlib.nullcontext() if conn is not None else self.backend.single():
            async with self.db.execute(sql, tuple(params)) as cur:
                return list(await cur.fetchall())

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


class _Tx:
    """A transaction in progress: its connection, and the task it belongs to."""

    def __init__(self, conn: Any, task: asyncio.Task[Any] | None) -> None:
        self.conn = conn
        self.task = task
        self.open = True


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
