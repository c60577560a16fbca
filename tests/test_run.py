"""`paperbot run` as an operator starts it: one process serving Telegram, polling and pushing."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot.models import Chat, ChatKind, Platform
from bot.store import Store
from tests.conftest import env_for, subprocess_env
from tests.fakes.arxiv import SEED_ID, FakeArxiv
from tests.fakes.telegram import TOKEN, FakeTelegram


async def test_run_serves_telegram_polls_arxiv_and_stops_cleanly(tmp_path: Path, fake_arxiv: FakeArxiv) -> None:
    today = datetime.now(UTC).date()
    fake_arxiv.set_listing("cs.CV", today, [SEED_ID])
    with FakeTelegram() as tg:
        env = subprocess_env(
            {
                **env_for(tmp_path, fake_arxiv),
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_API_BASE_URL": tg.url,
                "LOG_LEVEL": "DEBUG",
            }
        )
        # A chat that subscribed in an earlier run: the first poll at start has a topic to fetch.
        async with await Store.open(env["PAPERBOT_DB"]) as store:
            old = await store.ensure_chat(Chat(Platform.TELEGRAM, "777", ChatKind.PRIVATE))
            await store.add_topic(old.id, "cat:cs.CV")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            # The command menu is set at start.
            await tg.wait_for("setMyCommands", timeout=30)
            user = tg.user(501, "Ada")
            chat = tg.private_chat(user)
            tg.push_message(chat, "/subscribe cat:cs.CV", user)
            reply = await tg.wait_for("sendMessage", lambda c: "Subscribed" in str(c.params.get("text")), 30)
            assert reply.chat_id == chat["id"]
            tg.push_message(chat, "/help", user)
            await tg.wait_for("sendMessage", lambda c: "/subscribe QUERY" in str(c.params.get("text")), 30)
            # The first poll cycle runs at start: it reads the listing feed and stores the match.
            for _ in range(300):
                if fake_arxiv.count("rss"):
                    break
                await asyncio.sleep(0.1)
            assert fake_arxiv.count("rss") >= 1
            for _ in range(300):
                async with await Store.open(env["PAPERBOT_DB"]) as store:
                    if await store.get_meta("last_poll"):
                        break
                await asyncio.sleep(0.1)
            async with await Store.open(env["PAPERBOT_DB"]) as store:
                assert await store.get_paper(SEED_ID) is not None
                assert await store.get_meta("last_announcement") == today.isoformat()
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
    log = err.decode()
    assert proc.returncode == 0, log[-3000:]
    assert "paperbot stopped" in log
    assert TOKEN not in log and TOKEN.split(":")[1] not in log and TOKEN not in out.decode()
