"""Issue 9 seams, found by a hostile review after the merge: what the branches' pieces did
together that none of them did alone. Real polls against the fake arXiv; real senders against
the fake Bot API where the break is at the wire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import pytest

from bot.app import Components
from bot.arxiv_source import ArxivSource
from bot.delivery import push_once
from bot.models import Platform
from bot.poller import Poller
from tests.fakes.arxiv import FakeArxiv
from tests.test_poller import subscribed_last_week
from tests.test_push import MONDAY, RecordingSender, add_papers, subscribe


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


async def test_a_lagging_paper_awaited_for_two_topics_reaches_both_chats(c: Components, fake_arxiv: FakeArxiv) -> None:
    """A paper the API does not know yet is awaited for the topics that matched it. A topic
    subscribed later that matches it too (the announcement is matched again for it) must add to
    those topics, not replace them: the first chat lost the paper for good."""
    await subscribe(c, "100", "cat:cs.CV")
    a, b = add_papers(fake_arxiv, "20", ["Alpha", "Diffusion beta"])
    fake_arxiv.lagging.add(b)
    fake_arxiv.set_listing("cs.CV", MONDAY, [a, b])
    await subscribed_last_week(c)
    await Poller(c, clock=lambda: at(MONDAY, 8)).run_once()
    assert [r[0] for r in await c.store.awaiting_papers()] == [b]

    await subscribe(c, "200", "cat:cs.CV AND ti:diffusion")  # after the poll: the listing is matched again for it
    report = await Poller(c, clock=lambda: at(MONDAY, 9)).run_once()
    assert [r[0] for r in await c.store.awaiting_papers()] == [b]
    fake_arxiv.lagging.clear()
    await Poller(c, clock=lambda: at(MONDAY, 10)).run_once()

    sender = RecordingSender()
    await push_once(c, force=True, senders={Platform.TELEGRAM: sender})
    assert sender.papers_to("100") == [a, b]
    assert sender.papers_to("200") == [b]
