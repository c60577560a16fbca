"""Shared fixtures: loopback fakes of arXiv and Gemini, settings that point at them, built components."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.config import Settings, load_settings

FIXTURES = Path(__file__).parent / "fixtures"

# Nothing in the suite may reach a real service: clear whatever the developer's shell or .env holds.
_ENV_NAMES = [
    "TELEGRAM_BOT_TOKEN", "TELEGRAM_API_BASE_URL", "DISCORD_BOT_TOKEN", "GEMINI_API_KEY", "GEMINI_MODEL",
    "GEMINI_BASE_URL", "SUMMARIZER", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "ARXIV_API_URL", "ARXIV_RSS_URL", "PAPERBOT_DB", "PAPERBOT_CACHE_DIR",
    "PAPERBOT_TIMEZONE", "PAPERBOT_PUSH_TIME", "PAPERBOT_LANGUAGE", "PAPERBOT_POLL_MINUTES",
    "PAPERBOT_SUMMARY_QUOTA", "PAPERBOT_MAX_TOPICS", "LOG_LEVEL", "PAPERBOT_ARXIV_INTERVAL",
    "TELEGRAM_WEBHOOK_URL", "TELEGRAM_WEBHOOK_LISTEN", "TELEGRAM_WEBHOOK_SECRET", "PAPERBOT_METRICS_LISTEN",
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in _ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    # A stray .env in the working directory must not leak into the tests either.
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[object]:
    """A store on a fresh SQLite file (test modules that need both backends define their own)."""
    from bot.store import Store

    s = await Store.open(tmp_path / "t.db")
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def fake_arxiv() -> Iterator[object]:
    from tests.fakes.arxiv import FakeArxiv

    with FakeArxiv() as fake:
        yield fake


@pytest.fixture
def fake_gemini() -> Iterator[object]:
    from tests.fakes.gemini import FakeGemini

    with FakeGemini() as fake:
        yield fake


def env_for(tmp_path: Path, fake_arxiv: object, fake_gemini: object | None = None) -> dict[str, str]:
    """Environment for a `paperbot` run against the fakes (also used for subprocess tests)."""
    env = {
        "ARXIV_API_URL": fake_arxiv.api_url,  # type: ignore[attr-defined]
        "ARXIV_RSS_URL": fake_arxiv.rss_url,  # type: ignore[attr-defined]
        "PAPERBOT_ARXIV_INTERVAL": "0",
        "PAPERBOT_DB": str(tmp_path / "paperbot.db"),
        "PAPERBOT_CACHE_DIR": str(tmp_path / "cache"),
        "SUMMARIZER": "extractive",
    }
    if fake_gemini is not None:
        env.update(
            SUMMARIZER="gemini",
            GEMINI_API_KEY="test-key-not-secret-123",
            GEMINI_BASE_URL=fake_gemini.url,  # type: ignore[attr-defined]
        )
    return env


@pytest.fixture
def settings(
    tmp_path: Path, fake_arxiv: object, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Settings:
    for name, value in env_for(tmp_path, fake_arxiv).items():
        monkeypatch.setenv(name, value)
    if os.environ.get("PAPERBOT_TEST_DB") == "postgresql":
        # Every test built on `settings` against a fresh PostgreSQL database instead of SQLite.
        monkeypatch.setenv("PAPERBOT_DB", request.getfixturevalue("pg_url"))
    return load_settings()


@pytest.fixture
async def components(settings: Settings) -> AsyncIterator[object]:
    from bot.app import build_components

    c = await build_components(settings)
    try:
        yield c
    finally:
        await c.aclose()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def subprocess_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_NAMES}
    env.update(extra)
    return env


# --- databases: SQLite, and a real PostgreSQL server the tests start themselves -------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """One throwaway PostgreSQL cluster for the session; the PostgreSQL tests skip without one."""
    from tests.pgserver import PgCluster

    try:
        cluster = PgCluster.start()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: object) -> str:
    """The URL of a fresh, empty PostgreSQL database."""
    return pg_cluster.new_database()  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """`PAPERBOT_DB` of a fresh database of each backend: a file path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "p.db")
    return request.getfixturevalue("pg_url")
