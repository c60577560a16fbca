"""The senders `paperbot push` uses on its own, built where the adapters may be imported.

The core (delivery, scheduler) only knows the `Sender` protocol of bot/sender.py; this module and
bot/runner.py are the places that know the platforms and inject their senders.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from bot.app import Components
from bot.config import Settings
from bot.models import Platform
from bot.sender import Sender


@contextlib.asynccontextmanager
async def push_senders(settings: Settings, c: Components) -> AsyncIterator[dict[Platform, Sender]]:
    """The Bot API (when TELEGRAM_BOT_TOKEN is set) and Discord's REST API (DISCORD_BOT_TOKEN)."""
    senders: dict[Platform, Sender] = {}
    async with contextlib.AsyncExitStack() as stack:
        if settings.telegram_bot_token is not None:
            from bot.telegram_bot import TelegramSender, push_bot

            bot = await stack.enter_async_context(push_bot(settings))
            senders[Platform.TELEGRAM] = TelegramSender(bot, c.buttons, c.store)
        if settings.discord_bot_token is not None:
            from bot.discord_bot import rest_sender

            senders[Platform.DISCORD] = await stack.enter_async_context(rest_sender(c))
        yield senders
