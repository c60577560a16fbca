"""`paperbot run`: the chat adapters, the poller and the push scheduler in one asyncio process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from typing import Any

from bot.app import build_components
from bot.config import Settings
from bot.models import Platform
from bot.sender import Sender

log = logging.getLogger(__name__)


async def run_service(settings: Settings) -> None:
    c = await build_components(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    senders: dict[Platform, Sender] = {}
    stoppers: list[Any] = []
    stack = contextlib.AsyncExitStack()
    try:
        if settings.telegram_bot_token is not None:
            from bot.telegram_bot import TelegramSender, build_application, push_bot

            tg = build_application(c)
            await tg.initialize()
            # Application only runs post_init (the command menu) from run_polling; we start it by hand.
            if tg.post_init is not None:
                await tg.post_init(tg)
            await tg.start()
            assert tg.updater is not None
            await tg.updater.start_polling(drop_pending_updates=False)
            stoppers.append(_stop_telegram(tg))
            # The push has a Bot of its own, paced to Telegram's limits without bursts (the
            # application's limiter lets replies to commands burst, as Telegram allows).
            senders[Platform.TELEGRAM] = TelegramSender(await stack.enter_async_context(push_bot(settings)))
            log.info("Telegram bot started as @%s", tg.bot.username)
        if settings.discord_bot_token is not None:
            from bot.discord_bot import start_discord

            sender, stopper = await start_discord(c)
            senders[Platform.DISCORD] = sender
            stoppers.append(stopper)
        from bot.scheduler import Scheduler

        scheduler = Scheduler(c, senders, rng=random.Random())
        log.info("paperbot running; polling every %d min", settings.poll_minutes)
        await scheduler.run(stop)
    finally:
        for stopper in reversed(stoppers):
            with contextlib.suppress(Exception):
                await stopper
        with contextlib.suppress(Exception):
            await stack.aclose()
        await c.aclose()
        log.info("paperbot stopped")


async def _stop_telegram(app: Any) -> None:
    if app.updater is not None and app.updater.running:
        await app.updater.stop()
    await app.stop()
    await app.shutdown()
