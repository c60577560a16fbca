"""Benchmark: one poll cycle for 1,000 topics against a fake arXiv with a realistic daily announcement.

    python bench/poll.py [--topics N] [--chats N] [--papers N] [--seed S] [--category-only]

Topics, papers and category weights are those of bench/matcher.py (a mix of category, title,
phrase, author, OR, ANDNOT and wildcard queries). The announcement has `--papers` papers, each
listed in the feed of every category it carries ("new" in its primary category, "cross"
elsewhere) and in the feeds of their archives, with a fifth of them replacements. The fake
arXiv runs on 127.0.0.1 with no rate limit, so the time is the bot's own work plus loopback HTTP.

It prints arXiv requests per cycle (listing + id_list, and PDF downloads for summaries and
thumbnails, which the papers here do not have) and time, for a first cycle on an empty
database and for a second cycle on the same announcement. With `--category-only`, every topic
names a category, so the listing requests go to category feeds instead of the archives.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a plain script from anywhere

from bench.matcher import make_paper, make_topic  # noqa: E402
from bot.app import build_components  # noqa: E402
from bot.config import load_settings  # noqa: E402
from bot.models import Chat, ChatKind, Platform  # noqa: E402
from bot.poller import Poller  # noqa: E402
from bot.query import categories_of, normalize_query, parse_query  # noqa: E402
from tests.fakes.arxiv import FakeArxiv  # noqa: E402

DAY = date(2024, 5, 6)


def topics_for(rng: random.Random, n: int, category_only: bool) -> list[str]:
    queries: dict[str, None] = {}
    while len(queries) < n:
        node = parse_query(make_topic(rng))
        if category_only and categories_of(node) is None:
            continue
        queries[normalize_query(node)] = None
    return list(queries)


def announce(fake: FakeArxiv, rng: random.Random, n: int) -> None:
    feeds: dict[str, list[tuple[str, str]]] = {}
    for i in range(n):
        doc = make_paper(rng)
        aid = f"2405.{10000 + i}"
        fake.add_paper(
            aid, title=doc.title, abstract=doc.abstract, authors=doc.authors, categories=doc.categories,
            published=datetime(2024, 5, 3, 12, tzinfo=UTC),
        )
        replaced = rng.random() < 0.2
        for k, cat in enumerate(doc.categories):
            kind = ("replace" if k == 0 else "replace-cross") if replaced else ("new" if k == 0 else "cross")
            for feed in dict.fromkeys([cat, cat.split(".", 1)[0]]):
                feeds.setdefault(feed, []).append((aid, kind))
    for feed, items in feeds.items():
        fake.set_listing(feed, DAY, items)


async def cycle(fake: FakeArxiv, poller: Poller, label: str) -> None:
    before = {e: fake.count(e) for e in ("rss", "api", "pdf")}
    marks: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    report = await poller.run_once(progress=lambda msg: marks.append((time.perf_counter(), msg)))
    total = time.perf_counter() - t0
    prepared_at = next((t for t, msg in marks if msg.startswith("preparing")), None)
    discovery = (prepared_at - t0) if prepared_at else total
    rss, api, pdf = (fake.count(e) - before[e] for e in ("rss", "api", "pdf"))
    print(f"{label}:")
    print(f"  arXiv requests: {rss + api} ({rss} listing for {report.feeds} feeds + {api} id_list); "
          f"PDF downloads tried: {pdf}")
    print(f"  listed {report.listed:,}, matched {report.matched:,} papers, {report.new_matches:,} (topic, paper) matches")
    print(f"  time: {total:.2f} s (discovery {discovery:.2f} s: listings, matching, id_list, storing; "
          f"then {report.summaries} summaries and {report.thumbnails} thumbnail sets in {total - discovery:.2f} s)")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topics", type=int, default=1_000)
    ap.add_argument("--chats", type=int, default=300)
    ap.add_argument("--papers", type=int, default=1_500, help="papers in the announcement")
    ap.add_argument("--seed", type=int, default=20240506)
    ap.add_argument("--category-only", action="store_true", help="only topics that name a category")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    logging.basicConfig(level=logging.ERROR)  # not one warning per missing PDF

    with FakeArxiv(recorded=False) as fake, tempfile.TemporaryDirectory() as tmp:
        announce(fake, rng, args.papers)
        os.environ.update(
            ARXIV_API_URL=fake.api_url, ARXIV_RSS_URL=fake.rss_url, PAPERBOT_ARXIV_INTERVAL="0",
            PAPERBOT_DB=str(Path(tmp) / "bench.db"), PAPERBOT_CACHE_DIR=str(Path(tmp) / "cache"),
            SUMMARIZER="extractive",
        )
        c = await build_components(load_settings())
        try:
            queries = topics_for(rng, args.topics, args.category_only)
            chats = [
                await c.store.ensure_chat(Chat(Platform.TELEGRAM, str(i), ChatKind.PRIVATE))
                for i in range(args.chats)
            ]
            for i, query in enumerate(queries):  # every topic followed by one to three chats
                for chat in rng.sample(chats, rng.randint(1, 3)) if i >= len(chats) else [chats[i]]:
                    await c.store.add_topic(chat.id, query)  # type: ignore[arg-type]
            anywhere = sum(categories_of(parse_query(q)) is None for q in queries)
            print(f"{len(queries):,} topics ({anywhere} without a category; {await c.store.count_subscriptions():,} "
                  f"subscriptions in {len(chats)} chats); announcement of {args.papers:,} papers; seed {args.seed}")
            poller = Poller(c)
            # A poll rematches an announcement for subscriptions made in the second it started.
            await asyncio.sleep(1.1)
            await cycle(fake, poller, "first cycle (new announcement)")
            await cycle(fake, poller, "second cycle (same announcement)")
        finally:
            await c.aclose()


if __name__ == "__main__":
    asyncio.run(main())
