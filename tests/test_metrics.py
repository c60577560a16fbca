"""/metrics and /healthz: `run_service` serves them on PAPERBOT_METRICS_LISTEN; a /summary asked through
the fake Bot API, the first poll and the push sends show up in the Prometheus text; /healthz turns 503
when the database is gone or the scheduler's loop stops beating."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from telegram import Bot

from bot.buttons import ButtonSigner
from bot.app import Components
from bot.config import load_settings
from bot.metrics import Metrics, MeteredSender, Probe, serve_metrics
from bot.models import Chat, ChatKind, Paper, Platform
from bot.runner import run_service
from bot.sender import ChatGone
from bot.store import Store
from bot.telegram_bot import TelegramSender
from tests.conftest import env_for, free_port
from tests.fakes.arxiv import SEED_ID, FakeArxiv
from tests.fakes.telegram import TOKEN, FakeTelegram

ALICE = FakeTelegram.user(3001, "Alice")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by (name, sorted labels); raises if it does not parse."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()


async def test_metrics_count_a_summary_a_poll_and_pushes_and_healthz_answers(
    tmp_path: Path, fake_arxiv: FakeArxiv, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = datetime.now(UTC).date()
    fake_arxiv.set_listing("cs.CV", today, [SEED_ID])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with FakeTelegram() as tg:
        env = {
            **env_for(tmp_path, fake_arxiv),
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": tg.url,
            "PAPERBOT_METRICS_LISTEN": f"127.0.0.1:{port}",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        async with await Store.open(env["PAPERBOT_DB"]) as store:
            old = await store.ensure_chat(Chat(Platform.TELEGRAM, "-100777", ChatKind.SUPERGROUP))
            await store.add_topic(old.id, "cat:cs.CV")
        stop = asyncio.Event()
        task = asyncio.create_task(run_service(load_settings(), stop))
        try:
            await tg.wait_for("setMyCommands", timeout=20)
            chat = tg.private_chat(ALICE)
            tg.push_message(chat, f"/summary {SEED_ID}", ALICE)
            await tg.wait_for("editMessageText", lambda c: c.chat_id == chat["id"], timeout=30)

            # The first poll runs at start; wait until it is counted.
            for _ in range(300):
                status, text = await get(f"{base}/metrics")
                if samples(text).get(("paperbot_polls_total", (("outcome", "ok"),))):
                    break
                await asyncio.sleep(0.05)
            assert status == 200
            got = samples(text)
            assert got[("paperbot_requests_total", (("command", "summary"), ("platform", "telegram")))] == 1
            assert got[("paperbot_summaries_total", (("backend", "extractive"), ("outcome", "ok")))] >= 1
            assert got[("paperbot_papers_polled_total", ())] >= 1
            assert got[("paperbot_papers_matched_total", ())] >= 1
            assert got[("paperbot_poll_duration_seconds_count", ())] == 1
            assert got[("paperbot_push_duration_seconds_count", ())] >= 1
            assert got[("paperbot_loop_heartbeat_age_seconds", (("loop", "scheduler"),))] >= 0
            # Labels are names, never ids or tokens.
            assert TOKEN not in text and TOKEN.split(":")[0] not in text
            assert str(ALICE["id"]) not in text and "-100777" not in text

            status, body = await get(f"{base}/healthz")
            assert status == 200 and '"ok"' in body
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def served(metrics: Metrics, store: Store) -> AsyncIterator[str]:
    probe = Probe(ping=store.ping, delivery_counts=store.delivery_counts)
    async with serve_metrics(metrics, probe, "127.0.0.1", 0) as port:
        yield f"http://127.0.0.1:{port}"


def _paper(arxiv_id: str) -> Paper:
    at = datetime(2024, 5, 3, tzinfo=UTC)
    return Paper(
        arxiv_id=arxiv_id, version=1, title="T", authors=["A"], abstract="B.", categories=["cs.CV"],
        published=at, updated=at, abs_url=f"http://arxiv.org/abs/{arxiv_id}v1", pdf_url=None,
    )


async def test_deliveries_by_status_are_read_at_scrape_time(components: Components) -> None:
    store = components.store
    chat = await store.ensure_chat(Chat(Platform.TELEGRAM, "42", ChatKind.PRIVATE))
    assert chat.id is not None
    ids = ["2405.00001", "2405.00002", "2405.00003", "2405.00004"]
    for aid in ids:
        await store.upsert_paper(_paper(aid))
    await store.ledger_add(chat.id, [(aid, date(2024, 5, 6), "cat:cs.CV") for aid in ids])
    rows = await store.ledger_rows(chat.id)
    await store.ledger_sent([rows[0].id])
    # A status this code does not know (another branch adds `given_up`) is counted as it is.
    await store.execute("UPDATE deliveries SET status=? WHERE id=?", ("given_up", rows[1].id))
    async with served(components.metrics, store) as base:
        status, text = await get(f"{base}/metrics")
        assert status == 200
        got = samples(text)
        assert got[("paperbot_deliveries", (("status", "pending"),))] == 2
        assert got[("paperbot_deliveries", (("status", "sent"),))] == 1
        assert got[("paperbot_deliveries", (("status", "given_up"),))] == 1
        await store.ledger_sent([r.id for r in rows])
        got = samples((await get(f"{base}/metrics"))[1])
        assert got[("paperbot_deliveries", (("status", "sent"),))] == 4
        assert ("paperbot_deliveries", (("status", "pending"),)) not in got


async def test_healthz_is_503_when_the_database_is_gone(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "paperbot.db")
    metrics = Metrics()
    async with served(metrics, store) as base:
        assert (await get(f"{base}/healthz"))[0] == 200
        await store.close()
        status, body = await get(f"{base}/healthz")
        assert status == 503 and "database" in body
        # /metrics still answers with the counters, only without the ledger's gauge.
        status, text = await get(f"{base}/metrics")
        assert status == 200 and "paperbot_requests_total" in text


async def test_healthz_is_503_when_the_scheduler_stops_beating(tmp_path: Path) -> None:
    now = [1000.0]
    metrics = Metrics(clock=lambda: now[0])
    async with await Store.open(tmp_path / "paperbot.db") as store, served(metrics, store) as base:
        metrics.beat("scheduler", 60.0)
        now[0] += 3 * 60.0  # three ticks late is still alive
        assert (await get(f"{base}/healthz"))[0] == 200
        now[0] += 1
        status, body = await get(f"{base}/healthz")
        assert status == 503 and "scheduler" in body
        metrics.beat("scheduler", 60.0)
        assert (await get(f"{base}/healthz"))[0] == 200


async def test_metered_sender_counts_sends_by_platform_and_outcome() -> None:
    metrics = Metrics()
    with FakeTelegram() as tg:
        tg.forbidden(-1002)
        async with Bot(TOKEN, base_url=f"{tg.url}/bot") as bot:
            sender = MeteredSender(TelegramSender(bot, ButtonSigner(b"k" * 32)), metrics)
            assert sender.platform is Platform.TELEGRAM
            ok = Chat(Platform.TELEGRAM, "1001", ChatKind.PRIVATE)
            gone = Chat(Platform.TELEGRAM, "-1002", ChatKind.SUPERGROUP)
            await sender.send_header(ok, "Your topics", date(2024, 5, 6), 3)
            with pytest.raises(ChatGone):
                await sender.send_header(gone, "Your topics", date(2024, 5, 6), 3)
    got = samples(metrics.exposition().decode())
    label: Any = lambda outcome: (("kind", "header"), ("outcome", outcome), ("platform", "telegram"))  # noqa: E731
    assert got[("paperbot_messages_sent_total", label("ok"))] == 1
    assert got[("paperbot_messages_sent_total", label("chat_gone"))] == 1


def test_llm_tokens_by_model_and_direction() -> None:
    metrics = Metrics()
    metrics.llm_call("gemini:gemini-2.5-flash", 1200, 300)
    metrics.llm_call("gemini:gemini-2.5-flash", 800, None)
    got = samples(metrics.exposition().decode())
    key = "paperbot_llm_tokens_total"
    assert got[(key, (("direction", "input"), ("model", "gemini:gemini-2.5-flash")))] == 2000
    assert got[(key, (("direction", "output"), ("model", "gemini:gemini-2.5-flash")))] == 300
    # Two objects never share a counter: no global registry.
    assert "paperbot_llm_tokens_total{" not in Metrics().exposition().decode()


async def test_healthcheck_command_follows_healthz(tmp_path: Path) -> None:
    """`python -m bot.healthcheck`, the Dockerfile's HEALTHCHECK, reads PAPERBOT_METRICS_LISTEN."""
    import sys

    from tests.conftest import subprocess_env

    async def check(listen: str) -> tuple[int, str]:
        env = subprocess_env({"PAPERBOT_METRICS_LISTEN": listen})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.healthcheck", env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode is not None
        return proc.returncode, (out + err).decode()

    store = await Store.open(tmp_path / "paperbot.db")
    async with served(Metrics(), store) as base:
        port = int(base.rsplit(":", 1)[1])
        code, text = await check(f"0.0.0.0:{port}")
        assert code == 0, text
        await store.close()
        code, text = await check(f"127.0.0.1:{port}")
        assert code == 1 and "503" in text
    code, text = await check(f"127.0.0.1:{free_port()}")
    assert code == 1 and "unhealthy" in text
