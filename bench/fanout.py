"""Benchmark: one daily push to many chats through a fake Bot API that enforces Telegram's limits.

    python bench/fanout.py [--chats 2000] [--papers 1] [--groups 0.1] [--scale 1]

The fake (tests/fakes/telegram.py, run in a child process so that the bot's memory is measured
alone) answers like the Bot API and enforces the limits Telegram publishes: 30 messages a second
overall, one a second per chat, 20 a minute per group, each with a 429 and `retry_after`. The bot
side is what `paperbot push` runs: the store with a chat per subscriber, the delivery ledger,
`push_once`, and the real python-telegram-bot ExtBot with the paced AIORateLimiter that
`push_bot` builds, through TelegramSender.

It prints the messages a second as a share of the limit, the 429s, the sends that arrived while a
`retry_after` the fake had given was still running (counted from 0.1 s after the 429, so that
requests already on the wire do not count), duplicate messages, the wall time of the push and
the process's peak RSS. `--scale K` multiplies every limit by K on both sides (for a memory run
with 10,000 chats in minutes instead of an hour of real time).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a plain script from anywhere

DAY = date(2024, 5, 6)
IN_FLIGHT_GRACE = 0.1  # seconds after a 429 before a send to that scope counts as ignoring it


# --- the fake Bot API, in a child process -----------------------------------------------------


def serve(scale: float) -> None:
    from aiohttp import web

    from tests.fakes.telegram import BotApiError, FakeTelegram

    class LimitedTelegram(FakeTelegram):
        """FakeTelegram with Telegram's flood limits (times are arrivals at the server)."""

        SENDS = {"sendMessage", "sendPhoto", "sendMediaGroup"}

        def __init__(self) -> None:
            super().__init__()
            self.overall: collections.deque[float] = collections.deque()
            self.groups: dict[int, collections.deque[float]] = {}
            self.last: dict[int, float] = {}
            self.blocked: dict[Any, tuple[float, float]] = {}  # scope -> (429 at, retry until)
            self.stats = {"sent": 0, "429": 0, "ignored_retry_after": 0, "duplicates": 0, "first": None, "last": None}
            self.seen: set[tuple[int, int]] = set()
            self.server.app.router.add_get("/stats", self._stats)

        async def _stats(self, request: web.Request) -> web.Response:
            return web.json_response(self.stats)

        def _limit(self, chat_id: int, now: float) -> None:
            for scope in ("*", chat_id):
                at, until = self.blocked.get(scope, (0.0, 0.0))
                if at + IN_FLIGHT_GRACE <= now < until:
                    self.stats["ignored_retry_after"] += 1
            while self.overall and self.overall[0] <= now - 1:
                self.overall.popleft()
            if len(self.overall) >= 30 * scale:
                self._refuse("*", now, self.overall[0] + 1 - now)
            last = self.last.get(chat_id)
            if last is not None and now - last < 1 / scale:
                self._refuse(chat_id, now, last + 1 / scale - now)
            if chat_id < 0:
                window = self.groups.setdefault(chat_id, collections.deque())
                while window and window[0] <= now - 60:
                    window.popleft()
                if len(window) >= 20 * scale:
                    self._refuse(chat_id, now, window[0] + 60 - now)
                window.append(now)
            self.overall.append(now)
            self.last[chat_id] = now

        def _refuse(self, scope: Any, now: float, wait: float) -> None:
            retry_after = max(1, math.ceil(wait))
            self.blocked[scope] = (now, now + retry_after)
            self.stats["429"] += 1
            raise BotApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})

        async def _handle(self, request: web.Request) -> web.Response:
            method = request.match_info["method"]
            if method in self.SENDS:
                from tests.fakes.telegram import _decode

                body = await request.read()
                params, _files = _decode(request.headers.get("Content-Type", ""), body, request.query)
                chat_id = int(params.get("chat_id", 0))
                now = time.monotonic()
                try:
                    self._limit(chat_id, now)
                except BotApiError as exc:
                    return exc.response()
                key = (chat_id, hash(str(params.get("text") or params.get("caption") or params.get("media"))))
                self.stats["duplicates"] += key in self.seen
                self.seen.add(key)
                self.stats["sent"] += 1
                self.stats["first"] = self.stats["first"] or now
                self.stats["last"] = now
            response = await super()._handle(request)
            if method in self.SENDS:
                self.calls.clear()  # the benchmark needs the counts, not a million recorded calls
                self.messages.clear()
            return response

    fake = LimitedTelegram()
    with fake:
        print(f"PORT {fake.server.port}", flush=True)
        sys.stdin.read()  # until the parent closes it


# --- the bot side -------------------------------------------------------------------------


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(args: argparse.Namespace) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", "--scale", str(args.scale),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = (await proc.stdout.readline()).decode()
    url = f"http://127.0.0.1:{int(line.split()[1])}"
    try:
        await push(args, url)
    finally:
        proc.stdin.close()
        await proc.wait()


async def push(args: argparse.Namespace, url: str) -> None:
    import httpx

    from bot.app import build_components
    from bot.config import load_settings
    from bot.delivery import push_once
    from bot.models import Chat, ChatKind, Paper, Platform
    from bot.telegram_bot import PacedRateLimiter, TelegramSender, push_bot
    from tests.fakes.telegram import TOKEN

    tmp = Path(tempfile.mkdtemp(prefix="fanout-"))
    os.environ.update(
        TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE_URL=url, PAPERBOT_DB=str(tmp / "paperbot.db"),
        PAPERBOT_CACHE_DIR=str(tmp / "cache"), SUMMARIZER="extractive", ARXIV_API_URL="http://127.0.0.1:9/api",
        ARXIV_RSS_URL="http://127.0.0.1:9/rss", PAPERBOT_ARXIV_INTERVAL="0", LOG_LEVEL="WARNING",
    )
    settings = load_settings()
    c = await build_components(settings)
    t0 = time.monotonic()
    papers = []
    for n in range(args.papers):
        paper = Paper(
            f"2405.{n:05d}", 1, f"Fan-out paper {n}: diffusion for steel", ["Ada Lovelace", "Alan Turing"],
            "We study the fan-out of a daily push. " * 8, ["cs.CV"], datetime(2024, 5, 3, tzinfo=UTC),
            datetime(2024, 5, 3, tzinfo=UTC), f"https://arxiv.org/abs/2405.{n:05d}v1",
        )
        await c.store.upsert_paper(paper, announced=DAY)
        papers.append(paper)
    groups = int(args.chats * args.groups)
    for i in range(args.chats):
        chat_id = str(-(10**12) - i) if i < groups else str(10**6 + i)
        kind = ChatKind.SUPERGROUP if i < groups else ChatKind.PRIVATE
        chat = await c.store.ensure_chat(Chat(Platform.TELEGRAM, chat_id, kind))
        assert chat.id is not None
        await c.store.add_topic(chat.id, "cat:cs.CV")
    (topic_id, _query, _at), = await c.store.active_topics()
    await c.store.record_poll(
        matches=[(topic_id, p.arxiv_id, DAY) for p in papers], awaiting=[], announcements=[(["cs.CV"], DAY, len(papers))],
        listings=[], latest=DAY, at=datetime.now(UTC).isoformat(timespec="seconds"), seen_at="",
    )
    setup = time.monotonic() - t0
    before = rss_mb()

    t0 = time.monotonic()
    async with push_bot(settings, rate_limiter=PacedRateLimiter(scale=args.scale)) as bot:
        report = await push_once(c, force=True, senders={Platform.TELEGRAM: TelegramSender(bot, c.buttons, c.store)})
    wall = time.monotonic() - t0
    async with httpx.AsyncClient() as http:
        stats = (await http.get(f"{url}/stats")).json()
    await c.aclose()

    sent = stats["sent"]
    span = (stats["last"] - stats["first"]) if sent > 1 else wall
    rate = (sent - 1) / span if span else 0.0
    limit = 30 * args.scale
    print(json.dumps({
        "chats": args.chats, "groups": groups, "papers_per_chat": args.papers, "scale": args.scale,
        "messages": sent, "expected_messages": args.chats * (1 + args.papers),
        "messages_per_s": round(rate, 2), "share_of_limit": round(rate / limit, 3),
        "429s": stats["429"], "ignored_retry_after": stats["ignored_retry_after"], "duplicates": stats["duplicates"],
        "push_wall_s": round(wall, 1), "setup_s": round(setup, 1),
        "peak_rss_mb": round(rss_mb(), 1), "rss_before_push_mb": round(before, 1),
        "report": str(report),
    }, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chats", type=int, default=2000)
    parser.add_argument("--papers", type=int, default=1, help="papers per chat (each chat also gets a header)")
    parser.add_argument("--groups", type=float, default=0.1, help="share of the chats that are groups")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply Telegram's limits by this, on both sides")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.scale)
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
