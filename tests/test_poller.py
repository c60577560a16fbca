"""The poll cycle against the fake arXiv over HTTP: requests, matching, storage, announcements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import pytest

from bot.app import Components
from bot.arxiv_source import ArxivSource
from bot.delivery import push_once
from bot.models import Platform
from bot.poller import ARCHIVES, MAX_FEEDS_PER_REQUEST, Poller, plan_requests
from tests.fakes.arxiv import SEED_ID, FakeArxiv
from tests.test_push import MONDAY, TUESDAY, RecordingSender, add_papers, subscribe

SATURDAY = date(2024, 5, 4)
WORDS = ["diffusion", "transformer", "graph", "quantum", "sparse", "robust", "causal", "kernel", "agent", "spline"]
CATEGORIES = ["cs.CV", "cs.LG", "math.AP"]


async def matches(c: Components) -> list[tuple[int, str, str]]:
    rows = await c.store.fetchall("SELECT topic_id, arxiv_id, announced FROM matches ORDER BY topic_id, arxiv_id")
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def subscribed_last_week(c: Components) -> None:
    """Backdate the subscriptions: a test runs within one second, and a poll rematches an
    announcement for subscriptions made in the same second as it was processed (to be safe)."""
    await c.store.execute("UPDATE subscriptions SET created_at='2024-04-29T00:00:00+00:00'")


@pytest.fixture
async def c(components: Components) -> AsyncIterator[Components]:
    """Components whose arXiv client backs off in milliseconds, so that giving up is quick."""
    await components.arxiv.aclose()
    components.arxiv = ArxivSource(
        components.settings.arxiv_api_url, components.settings.arxiv_rss_url, components.limiter, backoff_base=0.01
    )
    yield components


async def test_fifty_topics_over_three_categories_cost_two_requests(c: Components, fake_arxiv: FakeArxiv) -> None:
    # 50 distinct topics in 10 chats: "cat:C AND ti:W" for the pairs (C, W) below.
    pairs = [(CATEGORIES[i % 3], WORDS[i % 10] if i < 30 else f"{WORDS[i % 10]}s") for i in range(50)]
    for chat_no in range(10):
        await subscribe(c, str(chat_no), *(f"cat:{cat} AND ti:{word}" for cat, word in pairs[chat_no::10]))
    # 30 papers, one per (category, word): cs.CV and diffusion, cs.LG and transformer, ...
    listed: dict[str, list[str]] = {}
    for n in range(30):
        cat, word = CATEGORIES[n % 3], WORDS[n % 10]
        (aid,) = add_papers(fake_arxiv, f"{40 + n}", [f"A {word} method"], categories=[cat])
        listed.setdefault(cat, []).append(aid)
    for cat, ids in listed.items():
        fake_arxiv.set_listing(cat, MONDAY, ids)

    report = await Poller(c).run_once()

    assert [h.path for h in fake_arxiv.hits if h.endpoint == "rss"] == ["/rss/cs.CV+cs.LG+math.AP"]
    assert fake_arxiv.count("api") == 1  # one id_list request for every matched paper
    assert (report.listing_requests, report.api_requests, report.requests) == (1, 1, 2)
    # Topic i (i < 30) is (CATEGORIES[i % 3], WORDS[i % 10]): exactly paper n == i matches it.
    topic_ids = {q: t for t, q, _ in await c.store.active_topics()}
    expected = sorted(
        (topic_ids[f"cat:{cat} AND ti:{word}"], f"2405.{40 + n}000", "2024-05-06")
        for n, (cat, word) in enumerate(pairs[:30])
    )
    assert await matches(c) == expected
    assert (report.listed, report.matched, report.fetched, report.new_matches) == (30, 30, 30, 30)
    stored = await c.store.papers_by_id([f"2405.{40 + n}000" for n in range(30)])
    assert len(stored) == 30 and all(p.pdf_url for p in stored.values())
    assert (await c.store.known_papers(["2405.40000"]))["2405.40000"] == "2024-05-06"
    assert await c.store.get_meta("last_announcement") == "2024-05-06"
    assert datetime.fromisoformat(await c.store.get_meta("last_poll") or "").tzinfo is not None
    assert str(report).startswith("announcement of 2024-05-06: 30 listed, 30 matched")


async def test_topics_without_a_category_read_every_archive_in_one_request(
    c: Components, fake_arxiv: FakeArxiv
) -> None:
    await subscribe(c, "1", "ti:diffusion", "cat:cs.CV AND ti:graph", "cat:hep-th")
    ids = add_papers(fake_arxiv, "20", ["Diffusion in physics", "Graph cuts"], categories=["physics.optics", "cs.CV"])
    fake_arxiv.set_listing("physics", MONDAY, ids)

    report = await Poller(c).run_once()

    # cs.CV and hep-th are part of the archives' feeds: no request of their own.
    assert [h.path for h in fake_arxiv.hits if h.endpoint == "rss"] == ["/rss/" + "+".join(sorted(ARCHIVES))]
    assert report.matched == 2 and fake_arxiv.count("api") == 1


def test_many_categories_are_joined_into_few_short_requests() -> None:
    cats = {f"math.{a}{b}" for a in "ABCDEFGHIJ" for b in "ABCDEFGHIJ"}  # 100 categories
    groups = plan_requests(cats | {"cs.CV", "cs", "hep-th"})
    assert sum(map(len, groups)) == 102  # cs.CV is in cs
    assert "cs.CV" not in sum(groups, []) and "cs" in sum(groups, [])
    assert len(groups) == 3 and all(len(g) <= MAX_FEEDS_PER_REQUEST and len("+".join(g)) <= 600 for g in groups)


async def test_a_weekend_stores_nothing_and_sends_nothing(c: Components, fake_arxiv: FakeArxiv) -> None:
    await subscribe(c, "1", "cat:cs.CV")
    fake_arxiv.set_listing("cs.CV", SATURDAY, [])

    report = await Poller(c).run_once()

    assert str(report).startswith("no announcement today (weekend or holiday)")
    assert fake_arxiv.count("api") == 0
    assert await c.store.count_papers() == 0 and await matches(c) == []
    assert await c.store.get_meta("last_announcement") is None
    sender = RecordingSender()
    assert str(await push_once(c, force=True, senders={Platform.TELEGRAM: sender})) == "nothing to push"
    assert sender.log == []


async def test_the_same_announcement_is_processed_once(c: Components, fake_arxiv: FakeArxiv) -> None:
    await subscribe(c, "1", "cat:cs.CV")
    await subscribed_last_week(c)
    fake_arxiv.set_listing("cs.CV", MONDAY, add_papers(fake_arxiv, "20", ["A", "B"]))
    first = await Poller(c).run_once()
    stored = await matches(c)

    second = await Poller(c).run_once()

    assert first.new_matches == 2 and len(stored) == 2
    assert (second.skipped, second.matched, second.new_matches, second.api_requests) == (1, 0, 0, 0)
    assert "1 feed(s) already processed" in str(second)
    assert fake_arxiv.count("api") == 1 and fake_arxiv.count("rss") == 2
    assert await matches(c) == stored


async def test_no_request_once_todays_announcement_is_in(c: Components, fake_arxiv: FakeArxiv) -> None:
    await subscribe(c, "1", "cat:cs.CV")
    await subscribed_last_week(c)
    fake_arxiv.set_listing("cs.CV", MONDAY, add_papers(fake_arxiv, "20", ["A"]))
    # 15:00 UTC on Monday is Monday in New York: no newer listing can exist yet.
    poller = Poller(c, clock=lambda: datetime(2024, 5, 6, 15, 0, tzinfo=UTC))
    await poller.run_once()
    assert fake_arxiv.count("rss") == 1

    again = await poller.run_once()
    assert fake_arxiv.count("rss") == 1 and again.skipped == 1

    # A new topic on the same feed still needs today's listing (its backfill).
    await subscribe(c, "2", "cat:cs.CV AND ti:a")
    await poller.run_once()
    assert fake_arxiv.count("rss") == 2


async def test_replacements_are_not_news_and_cross_lists_match(
    c: Components, fake_arxiv: FakeArxiv
) -> None:
    await subscribe(c, "1", "cat:cs.CV")
    (new,) = add_papers(fake_arxiv, "20", ["Seen on Monday"])
    (cross,) = add_papers(fake_arxiv, "30", ["A PDE paper"], categories=["math.AP", "cs.CV"])
    sender = RecordingSender()
    fake_arxiv.set_listing("cs.CV", MONDAY, [new, (cross, "cross")])
    await Poller(c).run_once()
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    assert sender.papers_to("1") == [new, cross]  # cat:cs.CV found the cross-list

    # Tuesday: v2 of Monday's paper, and a revision of an old paper never seen before: neither is news.
    fake_arxiv.add_paper(new, version=2, title="Seen on Monday, revised", published=datetime(2024, 5, 3, tzinfo=UTC))
    (unseen,) = add_papers(fake_arxiv, "50", ["Old but new to us"])
    fake_arxiv.set_listing("cs.CV", TUESDAY, [(new, "replace"), (unseen, "replace-cross"), SEED_ID])
    report = await Poller(c).run_once()
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})

    assert report.matched == 1
    assert sender.papers_to("1") == [new, cross, SEED_ID]
    assert unseen not in (await c.store.known_papers([unseen]))
    assert [(k, t) for k, _, t in sender.log if k == "header"][-1] == ("header", "cat:cs.CV — 2024-05-07: 1")
    paper = (await c.store.papers_by_id([new]))[new]
    assert paper.version == 1  # not fetched again either
    assert (await c.store.known_papers([new]))[new] == "2024-05-06"


async def test_arxiv_giving_up_records_a_failure_and_ends_the_cycle(c: Components, fake_arxiv: FakeArxiv) -> None:
    await subscribe(c, "1", "cat:cs.CV")
    fake_arxiv.set_listing("cs.CV", MONDAY, add_papers(fake_arxiv, "20", ["A"]))
    fake_arxiv.fail_next(503, 4, endpoint="rss")

    report = await Poller(c).run_once()

    assert report.failures and "HTTP 503 after 4 attempts" in report.failures[0]
    assert "failed: listing cs.CV" in str(report)
    assert (await c.store.recent_failures())[0][1] == "poll"
    assert await c.store.get_meta("last_poll") is None and await matches(c) == []

    # A 429 the client's retries absorb is no failure; the next cycle gets the announcement.
    fake_arxiv.fail_next(429, 1, endpoint="api")
    report = await Poller(c).run_once()
    assert not report.failures and report.new_matches == 1
    assert await c.store.get_meta("last_announcement") == "2024-05-06"


async def test_summaries_and_thumbnails_are_ready_before_the_push(c: Components, fake_arxiv: FakeArxiv) -> None:
    await subscribe(c, "1", "cat:cs.CV", max_papers=2)
    ids = add_papers(fake_arxiv, "20", ["B", "C"])
    fake_arxiv.set_listing("cs.CV", MONDAY, [SEED_ID, *ids])
    progress: list[str] = []

    report = await Poller(c).run_once(progress=progress.append)

    # Only what goes out as full posts (max_papers 2) is summarized; the third paper is a list line.
    assert report.summaries == 2 and await c.store.count_summaries() == 2
    papers = await c.store.papers_by_id([SEED_ID, *ids])
    assert await c.summaries.cached(papers[SEED_ID], "en") is not None
    assert await c.summaries.cached(papers[ids[1]], "en") is None
    assert list(c.pdfs.image_dir(papers[SEED_ID]).glob("fig*.jpg"))
    assert any("preparing 2 paper(s)" in line for line in progress)
    assert "2 summaries and 2 thumbnail sets ready" in str(report)


async def test_a_feed_arxiv_refuses_costs_only_its_own_topics(c: Components, fake_arxiv: FakeArxiv) -> None:
    """A category the listing service answers with HTTP 400 (say one arXiv retired) must not
    take the papers of the other topics in the same request with it."""
    await subscribe(c, "1", "cat:cs.CV")
    await subscribe(c, "2", "cat:cs.LG")
    (aid,) = add_papers(fake_arxiv, "77", ["A vision paper"], categories=["cs.CV"])
    fake_arxiv.set_listing("cs.CV", MONDAY, [aid])
    fake_arxiv.unknown_feeds.add("cs.LG")

    report = await Poller(c).run_once()

    paths = [h.path for h in fake_arxiv.hits if h.endpoint == "rss"]
    assert paths == ["/rss/cs.CV+cs.LG", "/rss/cs.CV", "/rss/cs.LG"]
    assert [a for _, a, _ in await matches(c)] == [aid]
    assert "refused by arXiv: cs.LG" in str(report)
    failures = await c.store.recent_failures()
    assert failures and "cs.LG" in failures[0][2]
