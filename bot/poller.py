"""One poll cycle: read arXiv's daily listings, match topics locally, store, and summarize ahead of the push.

The listing feeds give each announcement's papers with their title, abstract, authors and
categories, which is all a topic query looks at. So the cost in arXiv requests is one listing
request per 40 feeds plus one export-API request per 100 matched papers, whatever the number
of topics and chats.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from functools import partial

from bot.app import Components
from bot.arxiv_source import PAGE_SIZE, ArxivRejected, ArxivUnavailable, ListingItem
from bot.delivery import ARXIV_TZ, next_push, now_utc
from bot.models import Paper
from bot.query import MatchDoc, Node, QuerySyntaxError, TopicMatcher, categories_of, parse_query
from bot.store.base import now_iso

log = logging.getLogger(__name__)

# Every archive of arXiv: together their feeds list every paper of an announcement, so a topic
# that names no category is served by them.
ARCHIVES = (
    "astro-ph", "cond-mat", "cs", "econ", "eess", "gr-qc", "hep-ex", "hep-lat", "hep-ph", "hep-th", "math",
    "math-ph", "nlin", "nucl-ex", "nucl-th", "physics", "q-bio", "q-fin", "quant-ph", "stat",
)
MAX_FEEDS_PER_REQUEST = 40
MAX_FEED_CHARS = 600  # of the `a+b+c` part of a listing URL
REPLACEMENTS = ("replace", "replace-cross")
PREPARE_CONCURRENCY = 8  # summaries and thumbnails in flight at once (SummaryService caps the LLM calls itself)
# A paper the listing announced and the export API does not know is asked for again at every poll
# this long (arXiv's API usually catches up within hours); then it is logged and forgotten.
AWAIT_API = timedelta(days=7)
# The failure log and the quota events are pruned at every poll.
KEEP_FAILURES = timedelta(days=7)
KEEP_QUOTA_EVENTS = timedelta(days=1)  # longer than any quota window (service.QUOTA_WINDOW is 1 h)


@dataclass
class PollReport:
    announced: date | None = None  # the newest announcement processed in this cycle
    feeds: int = 0
    listing_requests: int = 0
    api_requests: int = 0
    listed: int = 0  # items in the listings processed
    matched: int = 0  # papers that matched a topic
    fetched: int = 0  # papers whose metadata came from the export API
    new_matches: int = 0  # (topic, paper) pairs stored
    summaries: int = 0
    thumbnails: int = 0
    skipped: int = 0  # feeds whose announcement was processed before
    empty: int = 0  # feeds without an announcement today (weekend, holiday)
    late: int = 0  # papers announced earlier that the API returned only now
    awaiting: int = 0  # announced papers the API does not have yet (asked again next poll)
    failures: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # feed requests arXiv refused (HTTP 400)
    busy: bool = False  # another process was polling this database: this cycle did nothing

    @property
    def requests(self) -> int:
        return self.listing_requests + self.api_requests

    def __str__(self) -> str:
        if self.busy:
            return "another process is polling this database; nothing to do here"
        if self.announced is not None:
            head = (
                f"announcement of {self.announced}: {self.listed} listed, {self.matched} matched "
                f"({self.new_matches} new topic matches, {self.fetched} papers fetched)"
            )
        elif self.empty and not self.listed:
            head = "no announcement today (weekend or holiday)"
        elif self.feeds == 0:
            head = "no active topics: nothing to poll"
        else:
            head = "no new announcement"
        parts = [
            head,
            f"{self.feeds} feed(s), {self.listing_requests} listing + {self.api_requests} API request(s)",
        ]
        if self.skipped:
            parts.append(f"{self.skipped} feed(s) already processed")
        if self.late:
            parts.append(f"{self.late} paper(s) announced earlier arrived from the API")
        if self.awaiting:
            parts.append(f"{self.awaiting} announced paper(s) not in the API yet, asked again next poll")
        if self.summaries or self.thumbnails:
            parts.append(f"{self.summaries} summaries and {self.thumbnails} thumbnail sets ready")
        if self.failures:
            parts.append("failed: " + "; ".join(self.failures))
        if self.rejected:
            parts.append("refused by arXiv: " + ", ".join(self.rejected))
        return "; ".join(parts)


@dataclass
class _Topic:
    id: int
    node: Node
    feeds: frozenset[str]
    subscribed_at: str  # the newest active subscription to it (ISO time)


def feeds_for(categories: set[str] | None) -> frozenset[str]:
    return frozenset(ARCHIVES) if categories is None else frozenset(categories)


def plan_requests(feeds: set[str]) -> list[list[str]]:
    """Feed groups, one listing request each: a category whose archive is fetched anyway is dropped."""
    kept = sorted(f for f in feeds if f.split(".", 1)[0] == f or f.split(".", 1)[0] not in feeds)
    groups: list[list[str]] = []
    for feed in kept:
        if groups and len(groups[-1]) < MAX_FEEDS_PER_REQUEST and len("+".join([*groups[-1], feed])) <= MAX_FEED_CHARS:
            groups[-1].append(feed)
        else:
            groups.append([feed])
    return groups


def _covers(feed: str, topic_feeds: frozenset[str]) -> bool:
    """Whether a requested feed serves a topic drawing on `topic_feeds` (an archive serves its categories)."""
    return feed in topic_feeds or any(f.split(".", 1)[0] == feed for f in topic_feeds)


def _lists(feed: str, item: ListingItem) -> bool:
    """Whether the listing of `feed` (a category or a whole archive) carries the item."""
    return any(cat == feed or cat.split(".", 1)[0] == feed for cat in item.categories)


def _match(
    topics: list[_Topic], listings: list[tuple[list[str], date, list[ListingItem], list[_Topic]]]
) -> dict[str, tuple[ListingItem, date, set[int]]]:
    """arxiv id -> (item, announcement, topic ids): each listed paper against the topics its listing
    was fetched for; a paper listed in two groups is matched once. Pure; runs in a worker thread."""
    matcher = TopicMatcher((t.id, t.node) for t in topics)
    found: dict[str, tuple[ListingItem, date, set[int]]] = {}
    for _group, day, items, relevant in listings:
        allowed = {t.id for t in relevant}
        for item in items:
            ids = matcher.match(MatchDoc.of(item)) & allowed
            if ids:
                entry = found.setdefault(item.arxiv_id, (item, day, set()))
                entry[2].update(ids)
    return found


class Poller:
    def __init__(self, c: Components, *, clock: Callable[[], datetime] = now_utc) -> None:
        self.c = c
        self.store = c.store
        self.clock = clock
        self._still_awaited: set[str] = set()  # this cycle's awaited papers the API still lacks

    async def run_once(self, progress: Callable[[str], None] | None = None) -> PollReport:
        """One cycle, unless another process (a replica, a cron `poll`) is polling this database:
        then nothing is done and the report says `busy`."""
        async with self.store.try_lock("poll") as got:
            if not got:
                return PollReport(busy=True)
            return await self._run_once(progress)

    async def _run_once(self, progress: Callable[[str], None] | None = None) -> PollReport:
        say = progress or (lambda _msg: None)
        report = PollReport()
        started = now_iso()
        now = self.clock()
        await self.store.prune_logs(now - KEEP_FAILURES, now - KEEP_QUOTA_EVENTS)
        self._still_awaited = set()
        await self._ask_awaiting(report)
        topics = await self._topics()
        groups = plan_requests(set().union(*(t.feeds for t in topics)) if topics else set())
        report.feeds = sum(map(len, groups))
        listings: list[tuple[list[str], date, list[ListingItem], list[_Topic]]] = []
        if groups:
            say(f"{len(topics)} topic(s) over {report.feeds} listing feed(s) in {len(groups)} request(s)")
        queue = list(groups)
        while queue:
            group = queue.pop(0)
            relevant = [t for t in topics if any(_covers(f, t.feeds) for f in group)]
            if await self._up_to_date(group, relevant):
                report.skipped += len(group)
                continue
            try:
                listing = await self.c.arxiv.fetch_listing(group)
            except ArxivRejected as exc:
                # A feed arXiv does not know is this group's problem, not arXiv being down: ask
                # for its feeds one by one, so only the bad one is lost, not its neighbours.
                if len(group) > 1:
                    queue[:0] = [[feed] for feed in group]
                    continue
                log.error("listing %s refused: %s", "+".join(group), exc)
                await self.store.record_failure("poll", f"listing {'+'.join(group)}: {exc}")
                report.rejected.append("+".join(group))
                continue
            except ArxivUnavailable as exc:
                # arXiv's retries are spent: end this cycle; the next one tries again.
                await self._failure(report, f"listing {'+'.join(group)}: {exc}")
                break
            report.listing_requests += 1
            items, stored = listing.items, False
            if items:
                # A feed without a date is from the newest announcement there can be.
                day = listing.announced or self.clock().astimezone(ARXIV_TZ).date()
            else:
                # No announcement today (weekend, holiday): a topic subscribed since the last one
                # still gets that one's papers, from the listing stored when it was processed.
                # (A category's papers may have been stored under its archive's feed.)
                archives = {f.split(".", 1)[0] for f in group}
                last = await self.store.last_listing(sorted(set(group) | archives))
                kept = [ListingItem(**i) for i in last[1]] if last is not None else []
                kept = [item for item in kept if any(_lists(f, item) for f in group)]
                if last is None or not kept:
                    report.empty += len(group)
                    continue
                day, items, stored = last[0], kept, True
            done = await self.store.processed_feeds(day)
            if all(f in done for f in group):
                # Processed before: only topics subscribed to since then still need this announcement.
                since = min(done[f] for f in group)
                relevant = [t for t in relevant if t.subscribed_at >= since]
                if not relevant:
                    if stored:
                        report.empty += len(group)
                    else:
                        report.skipped += len(group)
                    continue
            listings.append((group, day, items, relevant))
        if listings and not report.failures:
            await self._process(listings, topics, started, report, say)
        if report.failures:
            return report
        # Only a complete cycle counts: a subscription made before it started has had its backfill.
        await self.store.set_meta("last_poll", started)
        await self._prepare(report, say)
        return report

    async def _topics(self) -> list[_Topic]:
        topics = []
        for topic_id, query, subscribed_at in await self.store.active_topics():
            try:
                node = parse_query(query)
            except QuerySyntaxError as exc:  # stored queries are normalized; only a grammar change gets here
                log.warning("topic %d %r no longer parses, skipped: %s", topic_id, query, exc)
                continue
            topics.append(_Topic(topic_id, node, feeds_for(categories_of(node)), subscribed_at))
        return topics

    async def _up_to_date(self, group: list[str], relevant: list[_Topic]) -> bool:
        """No request needed: arXiv's newest possible listing (today in New York) is processed
        for every feed of the group, after the last subscription to the group's topics."""
        today = self.clock().astimezone(ARXIV_TZ).date()
        done = await self.store.processed_feeds(today)
        if not all(f in done for f in group):
            return False
        since = min(done[f] for f in group)
        return all(t.subscribed_at < since for t in relevant)

    async def _process(
        self,
        listings: list[tuple[list[str], date, list[ListingItem], list[_Topic]]],
        topics: list[_Topic],
        started: str,
        report: PollReport,
        say: Callable[[str], None],
    ) -> None:
        # Matching thousands of listed papers against every topic is CPU work: not on the event loop.
        found = await asyncio.to_thread(_match, topics, listings)
        report.listed += sum(len(items) for _group, _day, items, _relevant in listings)
        # A replacement is a new version of an older paper: not news, whether we saw the paper or not
        # (a fresh deployment or topic would otherwise push revisions of old papers as "new papers").
        found = {a: entry for a, entry in found.items() if entry[0].announce_type not in REPLACEMENTS}
        known = await self.store.known_papers(found)
        report.matched = len(found)
        wanted = [a for a in found if known.get(a) is None]
        missing: set[str] = set()
        if wanted:
            say(f"{len(found)} paper(s) matched; fetching {len(wanted)} from the arXiv API")
            try:
                papers = await self.c.arxiv.get_announced(wanted)
            except ArxivUnavailable as exc:
                await self._failure(report, f"metadata of {len(wanted)} paper(s): {exc}")
                return
            finally:
                report.api_requests += -(-len(wanted) // PAGE_SIZE)
            missing = set(wanted) - {p.arxiv_id for p in papers}
            if missing:
                # arXiv's API lags its listing: keep them and ask again at every poll (never "nothing new").
                log.warning("arXiv API has no record yet of %d listed paper(s): %s", len(missing), sorted(missing))
            for paper in papers:
                await self.store.upsert_paper(paper, announced=found[paper.arxiv_id][1])
            report.fetched = len(papers)
        newest = max(day for _group, day, _items, _relevant in listings)
        report.new_matches = await self.store.record_poll(
            matches=[(t, a, day) for a, (_item, day, ids) in found.items() if a not in missing for t in ids],
            awaiting=[(a, found[a][1], sorted(found[a][2])) for a in sorted(missing)],
            # As of the cycle's start: a subscription made while it ran gets matched next time.
            announcements=[(group, day, len(items)) for group, day, items, _relevant in listings],
            listings=[
                (feed, day, item.arxiv_id, asdict(item))
                for group, day, items, _relevant in listings
                for item in items
                for feed in group
                if _lists(feed, item)
            ],
            latest=newest,
            at=started,
            seen_at=self.clock().isoformat(timespec="seconds"),
        )
        report.awaiting += len(missing - self._still_awaited)  # each paper counted once
        report.announced = newest

    async def _ask_awaiting(self, report: PollReport) -> None:
        """Ask the API again for papers announced earlier that it did not have; store what it has now."""
        waiting = await self.store.awaiting_papers()
        if not waiting:
            return
        now = self.clock()
        expired = [a for a, _day, first, _topics in waiting if now - first > AWAIT_API]
        if expired:
            message = f"gave up waiting for the arXiv API to know {len(expired)} listed paper(s): {', '.join(expired)}"
            log.warning("poll: %s", message)
            await self.store.record_failure("poll", message)
        ask = {a: (day, topics) for a, day, first, topics in waiting if a not in expired}
        papers = []
        if ask:
            try:
                papers = await self.c.arxiv.get_papers(list(ask))
            except ArxivUnavailable as exc:
                log.warning("poll: papers awaited from the API: %s", exc)  # asked again next time
            finally:
                report.api_requests += -(-len(ask) // PAGE_SIZE)
        for paper in papers:
            await self.store.upsert_paper(paper, announced=ask[paper.arxiv_id][0])
        arrived = [p.arxiv_id for p in papers if p.arxiv_id in ask]
        if arrived or expired:
            report.new_matches += await self.store.record_late(
                [(t, a, ask[a][0]) for a in arrived for t in ask[a][1]], arrived, expired
            )
        report.late += len(arrived)
        report.awaiting += len(ask) - len(arrived)
        self._still_awaited = set(ask) - set(arrived)

    async def _prepare(self, report: PollReport, say: Callable[[str], None]) -> None:
        """Summaries (in each chat's language) and thumbnails of what the next pushes send as full posts."""
        latest_text = await self.store.get_meta("last_announcement")
        if latest_text is None:
            return
        latest = date.fromisoformat(latest_text)
        wanted: dict[str, set[str]] = {}  # arxiv id -> languages
        for chat, _last_pushed in await self.store.push_states():
            for item in (await next_push(self.c, chat, latest))[: chat.max_papers]:
                wanted.setdefault(item.arxiv_id, set()).add(chat.language)
        if not wanted:
            return
        papers = await self.store.papers_by_id(wanted)
        say(f"preparing {len(papers)} paper(s): summaries and thumbnails")
        slots = asyncio.Semaphore(PREPARE_CONCURRENCY)

        async def attempt(what: str, paper: Paper, make: Callable[[], Awaitable[object]]) -> bool:
            async with slots:
                try:
                    await make()
                except Exception as exc:  # noqa: BLE001 - the push makes another attempt
                    log.warning("%s of %s not ready: %s", what, paper.versioned_id, exc)
                    return False
                return True

        summaries = [
            attempt("summary", p, partial(self.c.summaries.summarize, p, lang))
            for a, p in papers.items()
            for lang in sorted(wanted[a])
        ]
        thumbnails = [
            attempt("thumbnails", p, partial(self.c.pdfs.thumbnails, p)) for p in papers.values()
        ]
        done = await asyncio.gather(*summaries, *thumbnails)
        report.summaries, report.thumbnails = sum(done[: len(summaries)]), sum(done[len(summaries) :])

    async def _failure(self, report: PollReport, message: str) -> None:
        log.warning("poll: %s", message)
        report.failures.append(message)
        await self.store.record_failure("poll", message)
