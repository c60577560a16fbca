"""ArxivSource over HTTP against the fake arXiv, and against arXiv's own recorded answers."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import arxiv
import httpx
import pytest
from aiohttp import web

from bot.arxiv_source import (
    ArxivSource,
    ArxivUnavailable,
    Listing,
    ListingItem,
    PaperNotFound,
    paper_from_result,
    parse_listing,
)
from bot.ids import ArxivId, BadArxivId, parse_arxiv_id
from bot.ratelimit import RateLimiter
from tests.fakes.arxiv import SEED_ABSTRACT, SEED_AUTHORS, SEED_ID, SEED_PDF, SEED_TITLE, FakeArxiv
from tests.fakes.server import ThreadedServer

RECORDED = Path(__file__).parent / "fixtures" / "arxiv"


def make_source(fake: FakeArxiv, limiter: RateLimiter | None = None, **kw: float) -> ArxivSource:
    return ArxivSource(fake.api_url, fake.rss_url, limiter or RateLimiter(0), backoff_base=0.01, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def source(fake_arxiv: FakeArxiv) -> AsyncIterator[ArxivSource]:
    src = make_source(fake_arxiv)
    yield src
    await src.aclose()


# --- lookups -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("2405.01872", "2405.01872"),
        ("2405.01872v1", "2405.01872v1"),
        ("arXiv:2405.01872", "2405.01872"),
        ("https://arxiv.org/abs/2405.01872v1", "2405.01872v1"),
        ("https://arxiv.org/pdf/2405.01872", "2405.01872"),
    ],
)
async def test_lookup_by_every_id_form(fake_arxiv: FakeArxiv, source: ArxivSource, typed: str, sent: str) -> None:
    paper = await source.get_paper(parse_arxiv_id(typed))

    assert (paper.arxiv_id, paper.version) == (SEED_ID, 1)
    assert paper.title == SEED_TITLE
    assert paper.authors == SEED_AUTHORS
    assert paper.abstract == SEED_ABSTRACT
    assert paper.categories == ["cs.CV"]
    assert paper.published == datetime(2024, 5, 3, 8, 37, 25, tzinfo=UTC)
    assert paper.abs_url == "https://arxiv.org/abs/2405.01872v1"
    # The PDF link comes from the entry, so it points back at the fake.
    assert paper.pdf_url == f"{fake_arxiv.url}/pdf/2405.01872v1"
    assert [h.query["id_list"] for h in fake_arxiv.hits] == [sent]


async def test_a_requested_version_is_kept(fake_arxiv: FakeArxiv, source: ArxivSource) -> None:
    first = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    fake_arxiv.add_paper("2401.00001", title="Draft title", published=first)
    fake_arxiv.add_paper("2401.00001", version=2, title="Final title", published=first, updated=first + timedelta(days=9))

    v1 = await source.get_paper(ArxivId("2401.00001", 1))
    latest = await source.get_paper(ArxivId("2401.00001"))

    assert (v1.version, v1.title, v1.updated) == (1, "Draft title", first)
    assert (latest.version, latest.title, latest.published) == (2, "Final title", first)
    assert latest.updated == first + timedelta(days=9)
    assert latest.pdf_url is not None and latest.pdf_url.endswith("/pdf/2401.00001v2")
    assert [h.query["id_list"] for h in fake_arxiv.hits] == ["2401.00001v1", "2401.00001"]


async def test_old_style_id(source: ArxivSource) -> None:
    paper = await source.get_paper(parse_arxiv_id("astro-ph/0601001"))

    assert (paper.arxiv_id, paper.version, paper.versioned_id) == ("astro-ph/0601001", 1, "astro-ph/0601001v1")
    assert paper.title.startswith("Frequency of Hot Jupiters and Very Hot Jupiters")
    assert paper.abstract.startswith("We derive the frequencies")  # leading blanks of the record gone
    assert paper.journal_ref == "ActaAstron.56:1-50,2006"
    assert paper.comment is not None and paper.comment.startswith("62 pages including 16 figures")
    assert paper.affiliations == ["Ohio State", "CfA", "Warsaw University Observatory"]
    assert paper.categories == ["astro-ph"]


@pytest.mark.parametrize(("aid", "message"), [
    (ArxivId("2405.99999"), "arXiv has no paper 2405.99999"),
    (ArxivId("2405.99999", 3), "arXiv has no paper 2405.99999v3"),
    (ArxivId(SEED_ID, 7), "arXiv has no paper 2405.01872v7"),
])
async def test_unknown_paper(source: ArxivSource, aid: ArxivId, message: str) -> None:
    with pytest.raises(PaperNotFound) as info:
        await source.get_paper(aid)
    assert str(info.value) == message


async def test_malformed_id_is_refused_by_arxiv(fake_arxiv: FakeArxiv, source: ArxivSource) -> None:
    with pytest.raises(BadArxivId, match="'abc' is not an arXiv id"):
        await source.get_paper(ArxivId("abc"))
    assert [(h.query["id_list"], h.status) for h in fake_arxiv.hits] == [("abc", 400)]


async def test_malformed_id_in_a_batch_is_refused_before_any_request(
    fake_arxiv: FakeArxiv, source: ArxivSource
) -> None:
    with pytest.raises(BadArxivId, match="'abc' is not an arXiv id"):
        await source.get_papers([SEED_ID, "abc"])
    assert fake_arxiv.hits == []


async def test_get_papers_batches_100_ids_per_request(fake_arxiv: FakeArxiv, source: ArxivSource) -> None:
    ids = [f"2402.{n:05d}" for n in range(1, 151)]
    for n, aid in enumerate(ids):
        fake_arxiv.add_paper(aid, title=f"Paper {n}", published=datetime(2024, 2, 1, tzinfo=UTC))

    papers = await source.get_papers([*ids, "2402.99999", ids[0]])  # one unknown, one repeated

    assert [p.arxiv_id for p in papers] == ids
    batches = [h.query["id_list"].split(",") for h in fake_arxiv.hits]
    assert [len(b) for b in batches] == [100, 51]
    assert batches[1][-1] == "2402.99999"


async def test_get_papers_keeps_versions_and_skips_unknown(fake_arxiv: FakeArxiv, source: ArxivSource) -> None:
    papers = await source.get_papers(["0808.05394", "1707.08567", "1111.2011v2", "astro-ph/0601001v1"])
    assert [p.versioned_id for p in papers] == ["1707.08567v1", "1111.2011v2", "astro-ph/0601001v1"]
    assert len(fake_arxiv.hits) == 1


# --- search -----------------------------------------------------------------------------------------


async def test_search_pages_through_newest_first(fake_arxiv: FakeArxiv, source: ArxivSource) -> None:
    start = datetime(2024, 3, 1, tzinfo=UTC)
    for n in range(230):
        fake_arxiv.add_paper(f"2403.{n:05d}", title=f"Widget study {n}", published=start + timedelta(hours=n))

    everything = await source.search("ti:widget", max_results=300)
    assert len(everything) == 230
    assert everything[0].arxiv_id == "2403.00229" and everything[-1].arxiv_id == "2403.00000"
    assert all(a.published > b.published for a, b in zip(everything, everything[1:], strict=False))
    assert [(h.query["start"], h.query["sortBy"], h.query["sortOrder"]) for h in fake_arxiv.hits] == [
        ("0", "submittedDate", "descending"),
        ("100", "submittedDate", "descending"),
        ("200", "submittedDate", "descending"),
    ]

    newest = await source.search("ti:widget", max_results=5)
    assert [p.arxiv_id for p in newest] == [f"2403.{n:05d}" for n in (229, 228, 227, 226, 225)]
    assert fake_arxiv.count("api") == 4


async def test_search_submitted_on_picks_that_day(fake_arxiv: FakeArxiv, source: ArxivSource) -> None:
    for aid, stamp in [
        ("2405.10001", "2024-05-02T23:59:59"),
        ("2405.10002", "2024-05-03T00:00:00"),
        ("2405.10003", "2024-05-03T23:59:30"),
        ("2405.10004", "2024-05-04T00:00:01"),
    ]:
        fake_arxiv.add_paper(aid, title=f"Vision {aid}", published=datetime.fromisoformat(stamp + "+00:00"))
    fake_arxiv.add_paper("2405.10005", title="Not vision", categories=["math.AP"],
                         published=datetime(2024, 5, 3, 12, tzinfo=UTC))

    papers = await source.search_submitted_on("cat:cs.CV", date(2024, 5, 3))

    assert [p.arxiv_id for p in papers] == ["2405.10003", SEED_ID, "2405.10002"]
    assert [h.query["search_query"] for h in fake_arxiv.hits] == [
        "(cat:cs.CV) AND submittedDate:[202405030000 TO 202405032359]"
    ]

    # arXiv's own date filter is coarse: neighbours of the day that come back are dropped.
    fake_arxiv.date_slack = timedelta(hours=6)
    assert [p.arxiv_id for p in await source.search_submitted_on("cat:cs.CV", date(2024, 5, 3))] == [
        "2405.10003", SEED_ID, "2405.10002"
    ]
    assert len(fake_arxiv.hits) == 2


async def test_search_syntax_of_the_fake_reaches_the_recorded_papers(source: ArxivSource) -> None:
    # Other tests lean on the fake's query support; check it on the recorded entries.
    assert [p.arxiv_id for p in await source.search("au:del_maestro")] == ["1111.2011"]
    assert [p.arxiv_id for p in await source.search('ti:"hot jupiters" OR cat:cs.IT')] == [
        "1707.08567", "astro-ph/0601001"
    ]
    gui = await source.search("cat:cs.SE AND (abs:GUI OR co:GUI) ANDNOT ti:survey")
    # 2503.05378 mentions GUI too, but is "A Survey on Web Testing".
    assert {p.arxiv_id for p in gui} == {"1202.4527", "1812.11470", "2005.14124", "2204.08348"}


# --- retries, timeouts, the limiter -------------------------------------------------------


async def test_503_twice_then_success(fake_arxiv: FakeArxiv, source: ArxivSource) -> None:
    fake_arxiv.fail_next(503, 2)
    paper = await source.get_paper(ArxivId(SEED_ID))
    assert paper.title == SEED_TITLE
    assert [h.status for h in fake_arxiv.hits] == [503, 503, 200]


async def test_429_is_retried_for_searches_and_listings(fake_arxiv: FakeArxiv, source: ArxivSource) -> None:
    fake_arxiv.fail_next(429, 1, "api")
    fake_arxiv.fail_next(429, 1, "rss")
    assert await source.search("ti:jupiters")
    assert (await source.fetch_listing(["cs.CV"])).announced == fake_arxiv.listing_day
    assert [(h.endpoint, h.status) for h in fake_arxiv.hits] == [
        ("api", 429), ("api", 200), ("rss", 429), ("rss", 200)
    ]


async def test_permanent_503_gives_up_with_a_clear_message(fake_arxiv: FakeArxiv, source: ArxivSource) -> None:
    fake_arxiv.fail_next(503, 4)
    with pytest.raises(ArxivUnavailable) as info:
        await source.get_paper(ArxivId(SEED_ID))
    host = fake_arxiv.url.removeprefix("http://")
    assert str(info.value) == f"the arXiv API at {host}: HTTP 503 after 4 attempts"
    assert fake_arxiv.count("api") == 4

    fake_arxiv.fail_next(503, 4, "rss")
    with pytest.raises(ArxivUnavailable, match=r"^the arXiv listing feed at .*: HTTP 503 after 4 attempts$"):
        await source.fetch_listing(["cs.CV"])
    assert fake_arxiv.count("rss") == 4


async def test_client_errors_are_not_retried(fake_arxiv: FakeArxiv, source: ArxivSource) -> None:
    fake_arxiv.fail_next(404, 1, "rss")
    with pytest.raises(ArxivUnavailable, match=r"HTTP 404$"):
        await source.fetch_listing(["cs.XX"])
    assert fake_arxiv.count("rss") == 1


async def test_a_hanging_server_times_out(fake_arxiv: FakeArxiv) -> None:
    fake_arxiv.delay_next(1.0, 2, "api")
    src = make_source(fake_arxiv, timeout=0.2, attempts=2)
    try:
        with pytest.raises(ArxivUnavailable, match=r"timed out after 2 attempts$"):
            await src.get_paper(ArxivId(SEED_ID))
    finally:
        await src.aclose()


async def test_nobody_listening() -> None:
    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = ArxivSource(f"http://127.0.0.1:{port}/api/query", f"http://127.0.0.1:{port}/rss",
                      RateLimiter(0), attempts=2, backoff_base=0.01)
    try:
        with pytest.raises(ArxivUnavailable, match="could not connect after 2 attempts"):
            await src.search("ti:anything")
        with pytest.raises(ArxivUnavailable, match="could not connect after 2 attempts"):
            await src.fetch_listing(["cs.CV"])
    finally:
        await src.aclose()


async def test_the_limiter_spaces_every_request(fake_arxiv: FakeArxiv) -> None:
    limiter = RateLimiter(0.2)
    src = make_source(fake_arxiv, limiter)
    fake_arxiv.fail_next(503, 1, "api")  # the retry takes a slot of its own
    try:
        await asyncio.gather(
            src.get_paper(ArxivId(SEED_ID)),
            src.get_paper(ArxivId("astro-ph/0601001")),
            src.search("ti:testing", max_results=3),
            src.fetch_listing(["cs.CV"]),
        )
    finally:
        await src.aclose()

    times = sorted(fake_arxiv.times())
    assert len(times) == 5 and limiter.requests == 5
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) > 0.17, gaps


# --- listing feeds --------------------------------------------------------------------------


async def test_listing_from_the_fake(fake_arxiv: FakeArxiv, source: ArxivSource) -> None:
    monday = date(2024, 5, 6)
    fake_arxiv.set_listing("cs.CV", monday, [SEED_ID, ("astro-ph/0601001", "replace-cross")])
    fake_arxiv.set_listing("cs.LG", monday, [("1111.2011", "cross"), (SEED_ID, "cross")])

    listing = await source.fetch_listing(["cs.CV", "cs.LG"])

    assert [h.path for h in fake_arxiv.hits] == ["/rss/cs.CV+cs.LG"]
    assert listing.announced == monday
    assert [(i.arxiv_id, i.version, i.announce_type) for i in listing.items] == [
        (SEED_ID, 1, "new"),
        ("astro-ph/0601001", 1, "replace-cross"),
        ("1111.2011", 2, "cross"),
    ]
    seed = listing.items[0]
    assert (seed.title, seed.abstract, seed.authors, seed.categories) == (
        SEED_TITLE, SEED_ABSTRACT, SEED_AUTHORS, ["cs.CV"]
    )
    # Hard-wrapped text of the 2016 record arrives on one line.
    assert listing.items[2].title == (
        "Quantum Criticality for Extended Nodes on a Bethe Lattice in the Large Connectivity Limit"
    )


async def test_weekend_listing_is_empty(fake_arxiv: FakeArxiv, source: ArxivSource) -> None:
    fake_arxiv.set_listing("cs.CV", date(2024, 5, 4), [])
    assert await source.fetch_listing(["cs.CV"]) == Listing(date(2024, 5, 4), [])


def test_parse_a_realistic_listing() -> None:
    listing = parse_listing((RECORDED / "rss_cs.CV_2024-05-06_constructed.xml").read_bytes())

    assert listing.announced == date(2024, 5, 6)
    assert [(i.arxiv_id, i.version, i.announce_type, i.categories) for i in listing.items] == [
        ("2405.01872", 1, "new", ["cs.CV"]),
        ("2405.13786", 1, "cross", ["cs.SE", "cs.AI"]),
        ("2204.08348", 3, "replace", ["cs.SE"]),
        ("2203.01250", 3, "replace-cross", ["math.AP", "math.OC"]),
    ]
    first, second, _, last = listing.items
    assert first == ListingItem("2405.01872", 1, SEED_TITLE, SEED_ABSTRACT, SEED_AUTHORS, ["cs.CV"], "new")
    assert second.authors == ["Aurora Ramírez", "Mario Berrios", "José Raúl Romero", "Robert Feldt"]
    assert last.abstract.startswith(r"We consider first order local minimization problems of the form $\min")
    assert last.authors == ["Antonin Monteil", "Paul Pegon"]
    assert not any("Announce Type" in i.abstract for i in listing.items)


def test_parse_an_empty_weekend_listing() -> None:
    listing = parse_listing((RECORDED / "rss_cs.CV_2024-05-04_weekend_constructed.xml").read_bytes())
    assert listing == Listing(date(2024, 5, 4), [])


def test_listing_dates_without_pubdate() -> None:
    feed = (RECORDED / "rss_cs.CV_2024-05-04_weekend_constructed.xml").read_text()
    no_pub = feed.replace("    <pubDate>Sat, 04 May 2024 00:00:00 -0400</pubDate>\n", "")
    # 03:30 UTC on the 7th is still the 6th in New York, where arXiv dates its announcements.
    late = no_pub.replace("Sat, 04 May 2024 04:00:02 +0000", "Tue, 07 May 2024 03:30:00 +0000")
    assert parse_listing(late.encode()).announced == date(2024, 5, 6)
    undated = no_pub.replace("    <lastBuildDate>Sat, 04 May 2024 04:00:02 +0000</lastBuildDate>\n", "")
    assert parse_listing(undated.encode()).announced is None


@pytest.mark.parametrize("body", [b"<html><body>Service Unavailable</body></html>", b"not xml at all", b""])
def test_parse_listing_refuses_what_is_not_a_feed(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_listing(body)


def test_parse_listing_does_not_expand_entities() -> None:
    evil = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY leak SYSTEM "file:///etc/hostname">]>
<rss version="2.0"><channel><item><title>&leak;</title>
<guid>oai:arXiv.org:2405.01872v1</guid><description>x</description></item></channel></rss>"""
    listing = parse_listing(evil)
    assert listing.items[0].title == ""


# --- arXiv's own recorded answers, replayed byte for byte ---------------------------------------


@contextmanager
def replay(name: str) -> Iterator[tuple[ThreadedServer, ArxivSource]]:
    """Serve one recorded response (with its recorded status) to every request."""
    body = (RECORDED / name).read_bytes()
    recording = RECORDED / name.replace(".xml", ".json")
    status = json.loads(recording.read_text())["status_code"] if recording.exists() else 200

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/atom+xml")

    app = web.Application()
    app.router.add_get("/api/query", answer)
    with ThreadedServer(app) as server:
        yield server, ArxivSource(f"{server.url}/api/query", f"{server.url}/rss", RateLimiter(0), backoff_base=0.01)


async def test_recorded_search_of_ten_entries() -> None:
    with replay("q_testing_s0_m10_bc5a6c384fe9.xml") as (server, src):
        papers = await src.search("testing", max_results=10)
        await src.aclose()
    assert len(papers) == 10 and len(server.requests) == 1
    assert all(p.comment for p in papers)  # every entry of this recording has a comment
    first = papers[0]
    assert first.versioned_id == "2202.12139v1"
    assert first.title == "Testing Deep Learning Models: A First Comparative Study of Multiple Testing Techniques"
    assert first.categories == ["cs.SE", "cs.LG"]
    assert first.doi == "10.1109/ICSTW55395.2022.00035"
    assert first.pdf_url == "https://arxiv.org/pdf/2202.12139v1"
    assert first.published.tzinfo is not None and first.published.utcoffset() == timedelta(0)
    assert sum(1 for p in papers if p.doi) == 6
    assert sum(1 for p in papers if p.journal_ref) == 6


async def test_recorded_legacy_entry() -> None:
    with replay("legacy2016_id_list=1111.2011v2.xml") as (_, src):
        paper = await src.get_paper(ArxivId("1111.2011", 2))
        await src.aclose()
    assert paper.versioned_id == "1111.2011v2"
    assert paper.title == "Quantum Criticality for Extended Nodes on a Bethe Lattice in the Large Connectivity Limit"
    assert "\n" not in paper.abstract and paper.abstract.startswith("Theoretical description of anisotropic")
    assert paper.categories == ["cond-mat.str-el", "cond-mat.stat-mech"]
    assert (paper.doi, paper.journal_ref) == ("10.1103/PhysRevB.85.115117", "Phys. Rev. B 85, 115117 (2012)")
    assert paper.updated == datetime(2012, 4, 2, 12, 38, 54, tzinfo=UTC)


async def test_recorded_batch_with_an_unknown_id() -> None:
    with replay("id_0808.05394_1707.08567_s0_m100_42e5aa0ec3af.xml") as (_, src):
        papers = await src.get_papers(["0808.05394", "1707.08567"])
        await src.aclose()
    assert [p.versioned_id for p in papers] == ["1707.08567v1"]
    assert papers[0].authors[0] == "Kees A. Schouhamer Immink"


async def test_recorded_empty_answer_is_not_found() -> None:
    with replay("id_0000.0000_s0_m100_8b51d9633a68.xml") as (_, src):
        with pytest.raises(PaperNotFound, match="arXiv has no paper 0000.0000"):
            await src.get_paper(ArxivId("0000.0000"))
        await src.aclose()


async def test_recorded_400_for_a_malformed_id() -> None:
    with replay("id_abc_s0_m100_b79c8dcf6bc3.xml") as (server, src):
        with pytest.raises(BadArxivId):
            await src.get_paper(ArxivId("abc"))
        await src.aclose()
    assert len(server.requests) == 1  # a 400 is an answer, not a hiccup: no retry


def test_paper_from_result_tidies_what_arxiv_sends() -> None:
    result = arxiv.Result(
        entry_id="http://arxiv.org/abs/2405.01872v3",
        updated=datetime(2024, 5, 9, 10, 0),  # naive: taken as UTC
        published=datetime(2024, 5, 3, 4, 37, 25, tzinfo=UTC),
        title="Defect Image Sample Generation\n  With Diffusion Prior",
        authors=[arxiv.Result.Author("Yichun  Tai", ["Shanghai University"]),
                 arxiv.Result.Author("Kun Yang", ["Shanghai University", "Somewhere"])],
        summary="  First line\nsecond line.  ",
        comment="",
        primary_category="cs.CV",
        categories=["eess.IV", "cs.CV", "eess.IV"],
        links=[arxiv.Result.Link("https://arxiv.org/abs/2405.01872v3", rel="alternate")],
    )
    paper = paper_from_result(result)
    assert (paper.arxiv_id, paper.version) == ("2405.01872", 3)
    assert paper.title == "Defect Image Sample Generation With Diffusion Prior"
    assert paper.abstract == "First line second line."
    assert paper.categories == ["cs.CV", "eess.IV"]
    assert paper.authors == ["Yichun Tai", "Kun Yang"]
    assert paper.affiliations == ["Shanghai University", "Somewhere"]
    assert paper.updated == datetime(2024, 5, 9, 10, 0, tzinfo=UTC)
    assert paper.comment is None and paper.pdf_url is None
    assert paper.abs_url == "https://arxiv.org/abs/2405.01872v3"


# --- the fake's PDFs ------------------------------------------------------------------------------


async def test_pdfs_are_served_for_registered_papers(fake_arxiv: FakeArxiv, source: ArxivSource) -> None:
    seed = await source.get_paper(ArxivId(SEED_ID))
    legacy = await source.get_paper(ArxivId("1111.2011", 2))
    async with httpx.AsyncClient() as http:
        got = await http.get(seed.pdf_url or "")
        old = await http.get(legacy.pdf_url or "")
        missing = await http.get(f"{fake_arxiv.url}/pdf/astro-ph/0601001v1")
        wrong_version = await http.get(f"{fake_arxiv.url}/pdf/{SEED_ID}v9")
    assert got.status_code == 200 and got.content == SEED_PDF.read_bytes()
    assert old.status_code == 200 and old.content.startswith(b"%PDF")
    assert (missing.status_code, wrong_version.status_code) == (404, 404)
    assert fake_arxiv.count("pdf") == 4
