"""Telegram webhook mode: `run_service` with TELEGRAM_WEBHOOK_URL sets the webhook on the fake Bot API
with its secret, PTB's own webhook server takes updates POSTed to the listen address, refuses
requests without the right secret header with 403, and a stopping process leaves the webhook set."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from bot.config import load_settings
from bot.runner import run_service
from tests.conftest import env_for, free_port, subprocess_env
from tests.fakes.arxiv import FakeArxiv
from tests.fakes.telegram import TOKEN, FakeTelegram

URL = "https://bot.example.org/paperbot/telegram"
SECRET = "s3cr3t-Value_for-tests"
HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALICE = FakeTelegram.user(2001, "Alice")


@contextlib.asynccontextmanager
async def webhook_service(
    tmp_path: Path, fake_arxiv: FakeArxiv, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch, url: str = URL
) -> AsyncIterator[str]:
    """`paperbot run` in webhook mode in this process; yields the URL to POST updates to."""
    port = free_port()
    env = {
        **env_for(tmp_path, fake_arxiv),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": tg.url,
        "TELEGRAM_WEBHOOK_URL": url,
        "TELEGRAM_WEBHOOK_LISTEN": f"127.0.0.1:{port}",
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(load_settings(), stop))
    try:
        await tg.wait_for("setWebhook", timeout=20)
        # PTB calls setWebhook before its server listens: wait for the port, as Telegram's retries would.
        await wait_listening(port)
        yield f"http://127.0.0.1:{port}{urlsplit(url).path}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.02)
        else:
            writer.close()
            await writer.wait_closed()
            return


async def post(url: str, update: dict[str, Any], secret: str | None) -> int:
    headers = {HEADER: secret} if secret is not None else {}
    async with aiohttp.ClientSession() as http, http.post(url, json=update, headers=headers) as resp:
        return resp.status


async def test_webhook_mode_sets_the_webhook_serves_updates_and_refuses_bad_secrets(
    tmp_path: Path, fake_arxiv: FakeArxiv, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeTelegram() as tg:
        async with webhook_service(tmp_path, fake_arxiv, tg, monkeypatch) as hook:
            (set_call,) = tg.calls_to("setWebhook")
            assert set_call.params["url"] == URL and set_call.params["secret_token"] == SECRET
            assert tg.webhook is not None and tg.webhook["url"] == URL
            # Webhook mode never long-polls (Telegram would refuse getUpdates with 409 anyway).
            assert not tg.calls_to("getUpdates") and not tg.calls_to("deleteWebhook")

            chat = tg.private_chat(ALICE)
            start = {"update_id": 10, "message": tg.new_message(chat, "/start", ALICE)}
            assert await post(hook, start, SECRET) == 200
            answer = await tg.wait_for("sendMessage", lambda c: c.chat_id == chat["id"])
            assert "/subscribe QUERY" in answer.params["text"]

            # Without the header, or with another secret: 403, and the bot says nothing.
            for n, secret in enumerate([None, "wrong-secret", SECRET + "x"]):
                update = {"update_id": 20 + n, "message": tg.new_message(chat, "/help", ALICE)}
                assert await post(hook, update, secret) == 403
            await tg.idle(quiet=0.5)
            assert len(tg.calls_to("sendMessage", chat["id"])) == 1

            help_ = {"update_id": 30, "message": tg.new_message(chat, "/help", ALICE)}
            assert await post(hook, help_, SECRET) == 200
            await tg.wait_for("sendMessage", lambda c: c.chat_id == chat["id"] and c.result["message_id"] != answer.result["message_id"])
        # Other replicas may still serve the webhook: stopping must not delete it.
        assert not tg.calls_to("deleteWebhook")
        assert tg.webhook is not None and tg.webhook["url"] == URL

        # Back to long polling: unset the URL; the bot removes the webhook before its first getUpdates.
        monkeypatch.delenv("TELEGRAM_WEBHOOK_URL")
        stop = asyncio.Event()
        task = asyncio.create_task(run_service(load_settings(), stop))
        try:
            await tg.wait_for("getUpdates", timeout=20)
            assert tg.webhook is None and len(tg.calls_to("deleteWebhook")) == 1
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def test_a_webhook_path_with_regex_characters_and_a_query_is_served_and_bad_bodies_refused(
    tmp_path: Path, fake_arxiv: FakeArxiv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PTB's server routes by regular expression: a path like /hook/a+b(1) (a random token with
    `+`) matched nothing, and every update Telegram sent was answered 404."""
    url = "https://bot.example.org/hook/a+b(1).x?replica=2"
    with FakeTelegram() as tg:
        async with webhook_service(tmp_path, fake_arxiv, tg, monkeypatch, url) as hook:
            assert tg.calls_to("setWebhook")[0].params["url"] == url
            chat = tg.private_chat(ALICE)
            start = {"update_id": 10, "message": tg.new_message(chat, "/start", ALICE)}
            assert await post(hook + "?replica=2", start, SECRET) == 200
            await tg.wait_for("sendMessage", lambda c: c.chat_id == chat["id"])
            async with aiohttp.ClientSession() as http:
                # Not JSON, with the secret: refused as a bad request, the server goes on.
                async with http.post(hook, data=b"\xff{not json", headers={HEADER: SECRET}) as resp:
                    assert 400 <= resp.status < 500
                # A big body without the secret: refused.
                async with http.post(hook, data=b"x" * 5_000_000) as resp:
                    assert resp.status == 403
            help_ = {"update_id": 11, "message": tg.new_message(chat, "/help", ALICE)}
            assert await post(hook, help_, SECRET) == 200
            await tg.idle(quiet=0.5)
            assert len(tg.calls_to("sendMessage", chat["id"])) == 2


async def test_webhook_mode_without_secret_exits_2_naming_it(tmp_path: Path, fake_arxiv: FakeArxiv) -> None:
    env = subprocess_env({
        **env_for(tmp_path, fake_arxiv),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9",
        "TELEGRAM_WEBHOOK_URL": URL,
    })
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "TELEGRAM_WEBHOOK_SECRET" in lines[0], lines


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"TELEGRAM_WEBHOOK_URL": URL, "TELEGRAM_WEBHOOK_SECRET": "has space"}, "TELEGRAM_WEBHOOK_SECRET"),
        ({"TELEGRAM_WEBHOOK_URL": URL, "TELEGRAM_WEBHOOK_SECRET": "x" * 257}, "TELEGRAM_WEBHOOK_SECRET"),
        ({"TELEGRAM_WEBHOOK_URL": "http://bot.example.org/hook"}, "TELEGRAM_WEBHOOK_URL"),
        ({"TELEGRAM_WEBHOOK_LISTEN": "8443"}, "TELEGRAM_WEBHOOK_LISTEN"),
        ({"PAPERBOT_METRICS_LISTEN": "localhost:http"}, "PAPERBOT_METRICS_LISTEN"),
    ],
)
def test_bad_webhook_and_metrics_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fragment: str
) -> None:
    from bot.config import ConfigError

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert fragment in str(info.value)
    assert "has space" not in str(info.value)  # a secret is never echoed


def test_webhook_settings_parse() -> None:
    s = load_settings(
        TELEGRAM_WEBHOOK_URL=URL, TELEGRAM_WEBHOOK_SECRET="a" * 256, PAPERBOT_METRICS_LISTEN="[::1]:9100"
    )
    assert s.webhook_listen == ("0.0.0.0", 8443)
    assert s.metrics_address == ("::1", 9100)
    assert load_settings().metrics_address is None and load_settings().telegram_webhook_url is None


async def test_paperbot_run_in_webhook_mode_never_logs_the_secret(tmp_path: Path, fake_arxiv: FakeArxiv) -> None:
    """The real command: DEBUG logs (PTB logs setWebhook's parameters there) show neither token nor secret."""
    import signal

    port = free_port()
    with FakeTelegram() as tg:
        env = subprocess_env({
            **env_for(tmp_path, fake_arxiv),
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": tg.url,
            "TELEGRAM_WEBHOOK_URL": URL,
            "TELEGRAM_WEBHOOK_LISTEN": f"127.0.0.1:{port}",
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "LOG_LEVEL": "DEBUG",
        })
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            await tg.wait_for("setWebhook", timeout=30)
            await wait_listening(port, timeout=30)
            chat = tg.private_chat(ALICE)
            update = {"update_id": 1, "message": tg.new_message(chat, "/help", ALICE)}
            assert await post(f"http://127.0.0.1:{port}/paperbot/telegram", update, SECRET) == 200
            await tg.wait_for("sendMessage", lambda c: c.chat_id == chat["id"])
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert not tg.calls_to("deleteWebhook")
    log = err.decode()
    assert proc.returncode == 0, log[-3000:]
    assert "webhook" in log.lower() and "paperbot stopped" in log
    assert "secret_token" in log  # PTB did log the parameters: the redaction is what kept the value out
    assert SECRET not in log and SECRET not in out.decode()
    assert TOKEN not in log and TOKEN.split(":")[1] not in log
