"""`paperbot run`: the chat adapters, the poller and the push scheduler in one asyncio process.

Telegram updates arrive by long polling, or, with TELEGRAM_WEBHOOK_URL set, by webhook through
python-telegram-bot's own webhook server (SPEC: TELEGRAM_WEBHOOK_*). With
PAPERBOT_METRICS_LISTEN set, /metrics and /healthz are served on the same loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import signal
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit

from bot.app import Components, build_components
from bot.config import Settings
from bot.metrics import MeteredSender, Probe, serve_metrics
from bot.models import Platform
from bot.sender import Sender

log = logging.getLogger(__name__)

# setWebhook at start is retried this often (about a second apart) before `run` gives up.
WEBHOOK_BOOTSTRAP_RETRIES = 3


def check_webhook_settings(settings: Settings) -> None:
    """Webhook mode needs its secret (SPEC: TELEGRAM_WEBHOOK_SECRET); raises UserError (exit 2) without it."""
    from bot.service import UserError

    webhook_mode = settings.telegram_bot_token is not None and settings.telegram_webhook_url is not None
    if webhook_mode and settings.telegram_webhook_secret is None:
        raise UserError(
            "TELEGRAM_WEBHOOK_SECRET is required when TELEGRAM_WEBHOOK_URL is set (webhook mode): "
            "1-256 characters A-Z a-z 0-9 _ -, e.g. from "
            'python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )


async def run_service(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM, or until `stop` is set when one is given (tests)."""
    check_webhook_settings(settings)
    c = await build_components(settings)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)

    senders: dict[Platform, Sender] = {}
    stoppers: list[Any] = []
    stack = contextlib.AsyncExitStack()
    try:
        async with contextlib.AsyncExitStack() as stack:
            address = settings.metrics_address
            if address is not None:
                probe = Probe(ping=c.store.ping, delivery_counts=c.store.delivery_counts)
                await stack.enter_async_context(serve_metrics(c.metrics, probe, *address))
            if settings.telegram_bot_token is not None:
                from bot.telegram_bot import TelegramSender, build_application, push_bot

                tg = build_application(c)
                await tg.initialize()
                # Application only runs post_init (the command menu) from run_polling; we start it by hand.
                if tg.post_init is not None:
                    await tg.post_init(tg)
                await tg.start()
                stoppers.append(_stop_telegram(tg))
                await _start_updates(tg, settings)
                # The push has a Bot of its own, paced to Telegram's limits without bursts (the
                # application's limiter lets replies to commands burst, as Telegram allows).
                push = await stack.enter_async_context(push_bot(settings))
                senders[Platform.TELEGRAM] = MeteredSender(TelegramSender(push, c.buttons, c.store), c.metrics)
                log.info("Telegram bot started as @%s", tg.bot.username)
            if settings.discord_bot_token is not None:
                from bot.discord_bot import start_discord

                sender, stopper = await start_discord(c)
                senders[Platform.DISCORD] = MeteredSender(sender, c.metrics)
                stoppers.append(stopper)
            await _schedule(c, senders, stop)
    finally:
        for stopper in reversed(stoppers):
            with contextlib.suppress(Exception):
                await stopper
        with contextlib.suppress(Exception):
            await stack.aclose()
        await c.aclose()
        log.info("paperbot stopped")


async def _schedule(c: Components, senders: dict[Platform, Sender], stop: asyncio.Event) -> None:
    from bot.scheduler import Scheduler

    scheduler = Scheduler(c, senders, rng=random.Random())
    log.info("paperbot running; polling every %d min", c.settings.poll_minutes)
    await until_stopped(scheduler.run(stop), stop)


async def _start_updates(app: Any, settings: Settings) -> None:
    """Long polling, or PTB's webhook server when TELEGRAM_WEBHOOK_URL is set."""
    updater = app.updater
    assert updater is not None
    url = settings.telegram_webhook_url
    if url is None:
        await updater.start_polling(drop_pending_updates=False)
        return
    secret = settings.telegram_webhook_secret
    assert secret is not None  # check_webhook_settings
    host, port = settings.webhook_listen
    # PTB calls setWebhook with the URL and secret, and its server answers 403 to a request
    # without the X-Telegram-Bot-Api-Secret-Token header or with another value.
    await updater.start_webhook(
        listen=host,
        port=port,
        # PTB's server (tornado) routes by regular expression: a path with `+` or `(` must match as written.
        url_path=re.escape(urlsplit(url).path),
        webhook_url=url,
        secret_token=secret.get_secret_value(),
        drop_pending_updates=False,
        bootstrap_retries=WEBHOOK_BOOTSTRAP_RETRIES,
    )
    log.info("Telegram webhook mode: listening on %s:%d for %s", host, port, urlsplit(url).path or "/")


# Seconds a step in progress (a push, a prepared summary) may take to finish after SIGTERM before it
# is cancelled; the delivery ledger treats that as a crash (at most the message in flight repeats).
STOP_GRACE = 5.0


async def until_stopped(work: Awaitable[None], stop: asyncio.Event, grace: float = STOP_GRACE) -> None:
    """Run `work` to its end; once `stop` is set, give it `grace` seconds, then cancel it.

    The scheduler looks at `stop` only between steps, and a step can wait on a PDF job for up to
    its time limit: without this, SIGTERM would wait for that.
    """
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=grace)
        if not task.done():
            log.warning("stopping: the step in progress did not end within %g s; cancelled", grace)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        else:
            task.result()
    finally:
        stopped.cancel()
        task.cancel()


async def _stop_telegram(app: Any) -> None:
    # Updater.stop only closes the webhook server; it never calls deleteWebhook, so the webhook
    # stays set for the other replicas behind the same URL (SPEC: TELEGRAM_WEBHOOK_SECRET).
    if app.updater is not None and app.updater.running:
        await app.updater.stop()
    if app.running:
        await app.stop()
    await app.shutdown()
