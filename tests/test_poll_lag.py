"""Issue 9, the poller's part: arXiv's API lagging its listing, empty or garbled API answers,
an announcement recorded in one transaction, weekend backfill. Real polls against the fake arXiv."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from bot.app import Components
from bot.arxiv_source import ArxivSource
from bot.delivery import push_once
from bot.models import Platform
from bot.poller import Poller
from bot.service import Service, UserError
from tests.fakes.arxiv import FakeArxiv
from tests.test_poller import subscribed_last_week
from tests.test_push import MONDAY, Crash, RecordingSender, add_papers, last_pushed, statuses, subscribe

FRIDAY = date(2024, 5, 3)
SATURDAY = date(2024, 5, 4)


@pytest.fixture
async def c(components: Components) -> AsyncIterator[Components]:
    """Components whose arXiv client backs off in milliseconds."""
    await components.arxiv.aclose()
    components.arxiv = ArxivSource(
        components.settings.arxiv_api_url, components.settings.arxiv_rss_url, components.limiter, backoff_base=0.001
    )
    yield components


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


async def test_a_paper_the_api_does_not_know_yet_is_delivered_once_it_does(c: Components, fake_arxiv: FakeArxiv) -> None:
    """Item 1: listing [A, B], the API answers only A; a later poll finds B and it is pushed."""
    chat = await subscribe(c, "100", "cat:cs.CV", timezone="UTC", push_time="09:00")
    a, b = add_papers(fake_arxiv, "20", ["A", "B"])
    fake_arxiv.lagging.add(b)
    fake_arxiv.set_listing("cs.CV", MONDAY, [a, b])
    await subscribed_last_week(c)
    sender = RecordingSender()
    senders = {Platform.TELEGRAM: sender}

    report = await Poller(c, clock=lambda: at(MONDAY, 8)).run_once()
    assert report.fetched == 1 and report.awaiting == 1
    assert "1 announced paper(s) not in the API yet" in str(report)
    assert [r[0] for r in await c.store.awaiting_papers()] == [b]
    await push_once(c, senders=senders, clock=lambda: at(MONDAY, 9))
    assert sender.papers_to("100") == [a]
    assert await last_pushed(c, chat) == MONDAY

    # Still lagging: asked again, kept.
    report = await Poller(c, clock=lambda: at(MONDAY, 9)).run_once()
    assert (report.late, report.awaiting) == (0, 1)
    fake_arxiv.lagging.clear()
    report = await Poller(c, clock=lambda: at(MONDAY, 10)).run_once()
    assert (report.late, report.awaiting, report.new_matches) == (1, 0, 1)
    assert await c.store.awaiting_papers() == []
    # The chat is due again for it: it goes out with the next push, not the next announcement's.
    await push_once(c, senders=senders, clock=lambda: at(MONDAY, 10))
    assert sender.papers_to("100") == [a, b]
    assert [k for k, *_ in sender.log].count("header") == 1
    await push_once(c, senders=senders, clock=lambda: at(MONDAY, 11))
    assert sender.papers_to("100") == [a, b]


async def test_a_paper_the_api_never_knows_is_given_up_after_a_week(c: Components, fake_arxiv: FakeArxiv) -> None:
    await subscribe(c, "100", "cat:cs.CV")
    a, b = add_papers(fake_arxiv, "20", ["A", "B"])
    fake_arxiv.lagging.add(b)
    fake_arxiv.set_listing("cs.CV", MONDAY, [a, b])
    await subscribed_last_week(c)
    await Poller(c, clock=lambda: at(MONDAY)).run_once()
    await Poller(c, clock=lambda: at(MONDAY + timedelta(days=6))).run_once()
    assert len(await c.store.awaiting_papers()) == 1
    await Poller(c, clock=lambda: at(MONDAY + timedelta(days=8))).run_once()
    assert await c.store.awaiting_papers() == []
    assert any(b in detail and "gave up waiting" in detail for _, _, detail in await c.store.recent_failures())


@pytest.mark.parametrize("kind", ["empty", "blank", "html"])
async def test_a_bad_api_answer_is_retried_not_believed(c: Components, fake_arxiv: FakeArxiv, kind: str) -> None:
    """Item 12: 200 without the announced entries, a blank body or an HTML page is a transient failure."""
    await subscribe(c, "100", "cat:cs.CV")
    ids = add_papers(fake_arxiv, "20", ["A", "B"])
    fake_arxiv.set_listing("cs.CV", MONDAY, ids)
    fake_arxiv.garble_next(kind, 2)

    report = await Poller(c).run_once()

    assert report.fetched == 2 and report.new_matches == 2 and not report.failures
    sender = RecordingSender()
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    assert sender.papers_to("100") == ids


@pytest.mark.parametrize("kind", ["empty", "blank", "html"])
async def test_an_api_that_keeps_answering_badly_loses_no_paper(c: Components, fake_arxiv: FakeArxiv, kind: str) -> None:
    await subscribe(c, "100", "cat:cs.CV")
    ids = add_papers(fake_arxiv, "20", ["A"])
    fake_arxiv.set_listing("cs.CV", MONDAY, ids)
    fake_arxiv.garble_next(kind, 4)  # every attempt of the poll

    report = await Poller(c).run_once()

    assert report.fetched == 0
    if kind == "empty":  # a well-formed answer without the paper: kept for the next poll
        assert report.awaiting == 1 and [r[0] for r in await c.store.awaiting_papers()] == ids
        assert "1 announced paper(s) not in the API yet, asked again next poll" in str(report)
    else:  # no answer at all: the cycle failed and the announcement is processed again next time
        assert report.failures and "not an Atom feed" in report.failures[0]
        assert await c.store.get_meta("last_announcement") is None
    await Poller(c).run_once()
    sender = RecordingSender()
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    assert sender.papers_to("100") == ids


@pytest.mark.parametrize("kind", ["blank", "html"])
async def test_summary_says_arxiv_is_unavailable_on_a_garbled_answer(
    c: Components, fake_arxiv: FakeArxiv, kind: str
) -> None:
    (aid,) = add_papers(fake_arxiv, "20", ["A"])
    fake_arxiv.garble_next(kind, 4)
    with pytest.raises(UserError) as err:
        await Service(c).summarize(aid, "en")
    assert "try again in a few minutes" in str(err.value) and "no paper" not in str(err.value)
    assert fake_arxiv.count("api") == 4  # retried


async def test_summary_believes_a_well_formed_empty_answer(c: Components, fake_arxiv: FakeArxiv) -> None:
    fake_arxiv.garble_next("empty", 1)
    with pytest.raises(UserError, match="arXiv has no paper 2405.99999"):
        await Service(c).summarize("2405.99999", "en")


async def test_a_poll_stopped_mid_record_leaves_nothing_half_done(
    c: Components, fake_arxiv: FakeArxiv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 6: the process dies while the announcement is recorded: all of it or none."""
    chat = await subscribe(c, "100", "cat:cs.CV", timezone="UTC", push_time="09:00")
    ids = add_papers(fake_arxiv, "20", ["A", "B"])
    fake_arxiv.set_listing("cs.CV", MONDAY, ids)
    real = c.store.db.execute

    def dying(sql: str, *args: Any) -> Any:
        if "'last_announcement'" in sql:
            raise Crash()
        return real(sql, *args)

    monkeypatch.setattr(c.store.db, "execute", dying)
    with pytest.raises(Crash):
        await Poller(c).run_once()
    monkeypatch.undo()
    assert await c.store.processed_feeds(MONDAY) == {}
    assert await c.store.fetchall("SELECT * FROM matches") == []
    assert await c.store.get_meta("last_announcement") is None

    await Poller(c).run_once()
    sender = RecordingSender()
    await push_once(c, senders={Platform.TELEGRAM: sender}, clock=lambda: at(MONDAY, 9))
    assert sender.papers_to("100") == ids
    assert [s for _, s in await statuses(c, chat)] == ["sent", "sent"]


async def test_a_topic_subscribed_on_a_weekend_gets_the_last_announcement(c: Components, fake_arxiv: FakeArxiv) -> None:
    """Item 7: Saturday's listing is empty; a new topic still gets Friday's papers, although no
    other chat follows that query."""
    await subscribe(c, "1", "cat:cs.CV")
    ids = add_papers(fake_arxiv, "20", ["Diffusion A", "Graphs B"])
    fake_arxiv.set_listing("cs.CV", FRIDAY, ids)
    await Poller(c, clock=lambda: at(FRIDAY)).run_once()
    sender = RecordingSender()
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    fake_arxiv.set_listing("cs.CV", SATURDAY, [])  # the weekend

    newcomer = await subscribe(c, "2", "cat:cs.CV AND ti:diffusion")
    report = await Poller(c, clock=lambda: at(SATURDAY)).run_once()
    assert report.new_matches == 1, report
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})

    assert sender.papers_to("2") == [ids[0]]
    assert sender.papers_to("1") == ids
    assert await last_pushed(c, newcomer) == FRIDAY
    # Later weekend polls find nothing new and say so.
    await subscribed_last_week(c)
    assert str(await Poller(c, clock=lambda: at(SATURDAY, 13)).run_once()).startswith("no announcement today")


async def test_a_fresh_bot_on_a_weekend_has_nothing_to_backfill(c: Components, fake_arxiv: FakeArxiv) -> None:
    await subscribe(c, "1", "cat:cs.CV")
    fake_arxiv.set_listing("cs.CV", SATURDAY, [])
    report = await Poller(c, clock=lambda: at(SATURDAY)).run_once()
    assert str(report).startswith("no announcement today (weekend or holiday)")


async def test_a_weekend_topic_on_a_category_is_backfilled_from_its_archives_listing(
    c: Components, fake_arxiv: FakeArxiv
) -> None:
    """Friday's listing was fetched as the whole `cs` archive (a topic named no category); a
    category topic subscribed on Saturday is served from it."""
    await subscribe(c, "1", "ti:diffusion")
    ids = add_papers(fake_arxiv, "20", ["Diffusion A", "Graphs B"], categories=["cs.LG"])
    fake_arxiv.listing_day = FRIDAY  # of the archives' feeds nobody set
    fake_arxiv.set_listing("cs", FRIDAY, ids)
    await Poller(c, clock=lambda: at(FRIDAY)).run_once()
    fake_arxiv.listing_day = SATURDAY
    fake_arxiv.set_listing("cs", SATURDAY, [])
    fake_arxiv.set_listing("cs.LG", SATURDAY, [])
    await c.store.remove_topics((await c.store.get_chat(Platform.TELEGRAM, "1")).id, None)  # type: ignore[union-attr]

    await subscribe(c, "2", "cat:cs.LG")
    report = await Poller(c, clock=lambda: at(SATURDAY)).run_once()
    assert report.new_matches == 2, report
    sender = RecordingSender()
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    assert sender.papers_to("2") == ids
