"""A fake arXiv on 127.0.0.1: the export API, PDFs and the daily listing feeds.

- `GET /api/query` answers in the Atom layout of the recorded responses in
  tests/fixtures/arxiv/*.xml (opensearch totals; per entry id, title, updated, alternate and
  pdf links, summary, categories, published, comment, primary category, journal ref,
  authors with affiliations, doi). id_list, a useful subset of search_query, sorting and
  paging work like arXiv's; a malformed id gets arXiv's HTTP 400 error feed.
- `GET /pdf/{id}` serves the PDF registered for a paper.
- `GET /rss/{feed}+{feed}...` serves listing feeds in the RSS 2.0 layout of rss.arxiv.org.

Ready at start: the seed paper 2405.01872 (with a stand-in PDF) and every entry of the
recorded responses (astro-ph/0601001, 1707.08567, the ten "testing" results, 1111.2011v2
with its PDF). Knobs: `add_paper`, `load_feed`, `set_pdf`, `set_listing`, `listing_day`,
`date_slack`, `fail_next`, `delay_next`. `hits` records every request with its arrival time
and answer status (`count(endpoint)`, `times(endpoint)` for "api", "pdf", "rss").
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo

from aiohttp import web
from lxml import etree

from tests.fakes.server import ThreadedServer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SEED_ID = "2405.01872"
SEED_TITLE = "Defect Image Sample Generation With Diffusion Prior for Steel Surface Defect Recognition"
SEED_AUTHORS = ["Yichun Tai", "Kun Yang", "Tao Peng", "Zhenzhen Huang", "Zhijiang Zhang"]
# From /work/shared/seed/000_c486eba2ae8c9293.txt, the reference post for this paper.
SEED_ABSTRACT = (
    "The task of steel surface defect recognition is an industrial problem with great industry values. "
    "The data insufficiency is the major challenge in training a robust defect recognition network. "
    "Existing methods have investigated to enlarge the dataset by generating samples with generative models. "
    "However, their generation quality is still limited by the insufficiency of defect image samples. "
    "To this end, we propose Stable Surface Defect Generation (StableSDG), which transfers the vast "
    "generation distribution embedded in Stable Diffusion model for steel surface defect image generation. "
    "To tackle with the distinctive distribution gap between steel surface images and generated images of "
    "the diffusion model, we propose two processes. First, we align the distribution by adapting parameters "
    "of the diffusion model, adopted both in the token embedding space and network parameter space. Besides, "
    "in the generation process, we propose image-oriented generation rather than from pure Gaussian noises. "
    "We conduct extensive experiments on steel surface defect dataset, demonstrating state-of-the-art "
    "performance on generating high-quality samples and training recognition models, and both designed "
    "processes are significant for the performance."
)
SEED_PUBLISHED = datetime(2024, 5, 3, 8, 37, 25, tzinfo=UTC)
# A real arXiv PDF (TableFormer, 2203.00274v2) standing in for the seed paper's own PDF,
# which is not in the fixtures.
SEED_PDF = FIXTURES / "pdf" / "2203.00274v2_tableformer.pdf"

RECORDED_FEEDS = [
    FIXTURES / "arxiv" / "id_astro-ph_0601001_s0_m100_3150dca9dc76.xml",
    FIXTURES / "arxiv" / "id_0808.05394_1707.08567_s0_m100_42e5aa0ec3af.xml",
    FIXTURES / "arxiv" / "q_testing_s0_m10_bc5a6c384fe9.xml",
    FIXTURES / "arxiv" / "legacy2016_id_list=1111.2011v2.xml",
]
RECORDED_PDFS = {"1111.2011": FIXTURES / "pdf" / "1111.2011v2.pdf"}

_ATOM = "http://www.w3.org/2005/Atom"
_ARXIV = "http://arxiv.org/schemas/atom"
_NS = {"atom": _ATOM, "arxiv": _ARXIV}
_ID = re.compile(r"^(?P<base>\d{4}\.\d{4,5}|[a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7})(?:v(?P<v>\d+))?$")
_NEW_YORK = ZoneInfo("America/New_York")


@dataclass
class FakePaper:
    arxiv_id: str  # base id
    version: int
    title: str
    abstract: str
    authors: list[str]
    published: datetime
    updated: datetime
    categories: list[str]  # primary first
    comment: str | None = None
    journal_ref: str | None = None
    doi: str | None = None
    affiliations: dict[str, list[str]] = field(default_factory=dict)  # author name -> affiliations

    @property
    def versioned(self) -> str:
        return f"{self.arxiv_id}v{self.version}"


@dataclass
class Hit:
    endpoint: str  # "api" | "pdf" | "rss"
    at: float  # time.monotonic() on arrival
    query: dict[str, str]
    path: str
    status: int = 200


class FakeArxiv:
    def __init__(self, *, recorded: bool = True) -> None:
        self._lock = threading.Lock()
        self._papers: dict[str, list[FakePaper]] = {}  # base id -> versions, oldest first
        self._pdfs: dict[str, bytes] = {}
        self._listings: dict[str, tuple[date, list[tuple[str, str]]]] = {}
        self.unknown_feeds: set[str] = set()  # feed names the listing service answers with HTTP 400
        self._failures: list[tuple[str | None, int]] = []  # (endpoint or None for any, status)
        self._delays: list[tuple[str | None, float]] = []
        # arXiv's API lags its listing: ids listed here are unknown to the API (not to the listing).
        self.lagging: set[str] = set()
        self._garbled: list[str] = []  # bad 200 answers the API gives next: "empty", "blank", "html"
        self.listing_day = date(2024, 5, 6)  # the announcement date of feeds nobody set
        # arXiv's date ranges are coarse; a slack makes the fake return neighbours of the range too.
        self.date_slack = timedelta(0)
        self.hits: list[Hit] = []
        app = web.Application()
        app.router.add_get("/api/query", self._api)
        app.router.add_get("/pdf/{aid:.+}", self._pdf)
        app.router.add_get("/rss/{feeds}", self._rss)
        self.server = ThreadedServer(app)
        app.middlewares.append(self._knobs)  # inside the server's recorder, so failures are recorded too
        self.add_paper(
            SEED_ID,
            title=SEED_TITLE,
            abstract=SEED_ABSTRACT,
            authors=SEED_AUTHORS,
            published=SEED_PUBLISHED,
            categories=["cs.CV"],
            pdf=SEED_PDF,
        )
        if recorded:
            for path in RECORDED_FEEDS:
                self.load_feed(path)
            for aid, pdf in RECORDED_PDFS.items():
                self.set_pdf(aid, pdf)

    # --- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> FakeArxiv:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/query"

    @property
    def rss_url(self) -> str:
        return f"{self.url}/rss"

    @property
    def requests(self) -> list[Any]:
        return self.server.requests

    # --- knobs ------------------------------------------------------------------------------

    def add_paper(
        self,
        arxiv_id: str,
        *,
        title: str,
        abstract: str = "An abstract.",
        authors: Sequence[str] = ("A. Author",),
        published: datetime,
        categories: Sequence[str] = ("cs.CV",),
        version: int = 1,
        updated: datetime | None = None,
        comment: str | None = None,
        journal_ref: str | None = None,
        doi: str | None = None,
        affiliations: dict[str, list[str]] | None = None,
        pdf: Path | bytes | None = None,
    ) -> FakePaper:
        """Register one version of a paper (add v1, v2... in order for a paper with history)."""
        paper = FakePaper(
            arxiv_id, version, title, abstract, list(authors), published, updated or published,
            list(categories), comment, journal_ref, doi, dict(affiliations or {}),
        )
        with self._lock:
            versions = [p for p in self._papers.get(arxiv_id, []) if p.version != version]
            self._papers[arxiv_id] = sorted([*versions, paper], key=lambda p: p.version)
        if pdf is not None:
            self.set_pdf(arxiv_id, pdf)
        return paper

    def load_feed(self, path: Path) -> list[FakePaper]:
        """Register every entry of a recorded API response (current or 2016 layout)."""
        root = etree.fromstring(path.read_bytes(), etree.XMLParser(resolve_entities=False, no_network=True))
        added = []
        for e in root.iterfind("atom:entry", _NS):
            m = _ID.match(e.findtext("atom:id", namespaces=_NS).split("/abs/")[-1])
            if m is None:
                continue  # an error entry
            primary = e.find("arxiv:primary_category", _NS).get("term")
            cats = [c.get("term") for c in e.iterfind("atom:category", _NS)]
            authors = [(a.findtext("atom:name", namespaces=_NS), a) for a in e.iterfind("atom:author", _NS)]
            added.append(
                self.add_paper(
                    m.group("base"),
                    version=int(m.group("v")),
                    title=e.findtext("atom:title", namespaces=_NS),
                    abstract=e.findtext("atom:summary", namespaces=_NS),
                    authors=[name for name, _ in authors],
                    published=_parse_time(e.findtext("atom:published", namespaces=_NS)),
                    updated=_parse_time(e.findtext("atom:updated", namespaces=_NS)),
                    categories=list(dict.fromkeys([primary, *cats])),
                    comment=e.findtext("arxiv:comment", namespaces=_NS),
                    journal_ref=e.findtext("arxiv:journal_ref", namespaces=_NS),
                    doi=e.findtext("arxiv:doi", namespaces=_NS),
                    affiliations={
                        name: [af.text for af in a.iterfind("arxiv:affiliation", _NS)]
                        for name, a in authors
                        if a.find("arxiv:affiliation", _NS) is not None
                    },
                )
            )
        return added

    def paper(self, arxiv_id: str) -> FakePaper:
        """The latest registered version."""
        return self._papers[arxiv_id][-1]

    def set_pdf(self, arxiv_id: str, pdf: Path | bytes) -> None:
        self._pdfs[arxiv_id] = pdf.read_bytes() if isinstance(pdf, Path) else pdf

    def set_listing(self, feed: str, day: date, items: Iterable[str | tuple[str, str]] = ()) -> None:
        """Announce registered papers in `feed` on `day`: ids (type "new") or (id, announce_type).

        No items means a day without an announcement (a weekend or holiday): an empty feed.
        """
        entries = [(i, "new") if isinstance(i, str) else i for i in items]
        for aid, _ in entries:
            if aid not in self._papers:
                raise KeyError(f"set_listing: {aid} is not a registered paper")
        self._listings[feed] = (day, entries)

    def fail_next(self, status: int, n: int = 1, endpoint: str | None = None) -> None:
        """Answer the next n requests (to `endpoint`, or any) with this HTTP status."""
        with self._lock:
            self._failures += [(endpoint, status)] * n

    def garble_next(self, kind: str, n: int = 1) -> None:
        """Answer the next n API requests with HTTP 200 and a bad body, as arXiv sometimes does:
        "empty" (a well-formed feed without entries), "blank" (no body) or "html" (an error page)."""
        assert kind in ("empty", "blank", "html"), kind
        with self._lock:
            self._garbled += [kind] * n

    def delay_next(self, seconds: float, n: int = 1, endpoint: str | None = None) -> None:
        """Hold the next n requests for `seconds` before answering (to trip client timeouts)."""
        with self._lock:
            self._delays += [(endpoint, seconds)] * n

    def count(self, endpoint: str) -> int:
        return sum(1 for h in self.hits if h.endpoint == endpoint)

    def times(self, endpoint: str | None = None) -> list[float]:
        return [h.at for h in self.hits if endpoint is None or h.endpoint == endpoint]

    # --- HTTP -------------------------------------------------------------------------------

    @web.middleware
    async def _knobs(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        endpoint = request.path.split("/")[1]
        hit = Hit(endpoint, time.monotonic(), dict(request.query), request.path)
        with self._lock:
            self.hits.append(hit)
            delay = _take(self._delays, endpoint)
            status = _take(self._failures, endpoint)
        if delay:
            await asyncio.sleep(delay)
        if status:
            hit.status = status
            return web.Response(status=status, text=f"fake arXiv: HTTP {status} on purpose\n")
        response = await handler(request)
        hit.status = response.status
        return response

    async def _api(self, request: web.Request) -> web.Response:
        q = request.query
        with self._lock:
            garbled = self._garbled.pop(0) if self._garbled else None
        if garbled == "empty":
            return _atom(self._feed(request, [], 0, 0, int(q.get("max_results", "10"))))
        if garbled == "blank":
            return web.Response(body=b"", content_type="application/atom+xml")
        if garbled == "html":
            return web.Response(
                text="<html><head><title>arXiv</title></head><body>Service temporarily unavailable</body></html>",
                content_type="text/html",
            )
        start, max_results = int(q.get("start", "0")), int(q.get("max_results", "10"))
        ids = [i.strip() for i in q.get("id_list", "").split(",") if i.strip()]
        for aid in ids:
            if not _ID.match(aid):
                return _atom(_error_feed(aid), status=400)
        try:
            matches = _compile_query(q["search_query"], self.date_slack) if q.get("search_query") else None
        except ValueError as exc:
            return web.Response(status=400, text=f"bad search_query: {exc}\n")
        with self._lock:
            if ids:
                found = [
                    p for p in (self._lookup(i) for i in ids) if p is not None and p.arxiv_id not in self.lagging
                ]
            else:
                found = [versions[-1] for versions in self._papers.values()] if matches else []
        if matches is not None:
            found = [p for p in found if matches(p)]
        sort_by = q.get("sortBy", "relevance")
        if sort_by in ("submittedDate", "lastUpdatedDate"):
            key = "published" if sort_by == "submittedDate" else "updated"
            found.sort(key=lambda p: (getattr(p, key), p.arxiv_id), reverse=q.get("sortOrder") != "ascending")
        page = found[start : start + max_results]
        return _atom(self._feed(request, page, len(found), start, max_results))

    def _lookup(self, text: str) -> FakePaper | None:
        m = _ID.match(text)
        assert m is not None
        versions = self._papers.get(m.group("base"), [])
        if m.group("v"):
            return next((p for p in versions if p.version == int(m.group("v"))), None)
        return versions[-1] if versions else None

    async def _pdf(self, request: web.Request) -> web.Response:
        m = _ID.match(request.match_info["aid"].removesuffix(".pdf"))
        pdf = self._pdfs.get(m.group("base")) if m else None
        if m and m.group("v") and self._lookup(m.group(0)) is None:
            pdf = None
        if pdf is None:
            return web.Response(status=404, text="fake arXiv: no such PDF\n")
        return web.Response(body=pdf, content_type="application/pdf")

    async def _rss(self, request: web.Request) -> web.Response:
        feeds = request.match_info["feeds"].split("+")
        unknown = [f for f in feeds if f in self.unknown_feeds]
        if unknown:  # as arXiv's feed service answers a subject class it does not have
            return web.Response(status=400, text=f"Bad Request: invalid category {unknown[0]}")
        listings = [self._listings.get(f, (self.listing_day, [])) for f in feeds]
        day = max(d for d, _ in listings)
        unique: dict[str, str] = {}  # a paper listed in two of the feeds appears once
        for d, entries in listings:
            for aid, kind in entries if d == day else ():
                unique.setdefault(aid, kind)
        body = _rss_feed("+".join(feeds), day, [(self.paper(aid), kind) for aid, kind in unique.items()])
        return web.Response(body=body.encode(), content_type="application/rss+xml", charset="utf-8")

    def _feed(self, request: web.Request, papers: list[FakePaper], total: int, start: int, size: int) -> str:
        q = request.query
        args = f"search_query={q.get('search_query', '')}&id_list={q.get('id_list', '')}&start={start}&max_results={size}"
        link = (
            f"{self.api_url}?search_query={q.get('search_query', '')}&start={start}"
            f"&max_results={size}&id_list={q.get('id_list', '')}"
        )
        digest = hashlib.sha1(args.encode()).hexdigest()[:27]
        head = f"""<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns="http://www.w3.org/2005/Atom">
  <id>https://arxiv.org/api/{digest}</id>
  <title>arXiv Query: {escape(args)}</title>
  <updated>{_stamp(datetime.now(UTC))}</updated>
  <link href={quoteattr(link)} type="application/atom+xml"/>
  <opensearch:itemsPerPage>{size}</opensearch:itemsPerPage>
  <opensearch:totalResults>{total}</opensearch:totalResults>
  <opensearch:startIndex>{start}</opensearch:startIndex>
"""
        return head + "".join(self._entry(p) for p in papers) + "</feed>\n"

    def _entry(self, p: FakePaper) -> str:
        v = p.versioned
        out = [
            "  <entry>",
            f"    <id>http://arxiv.org/abs/{v}</id>",
            f"    <title>{escape(p.title)}</title>",
            f"    <updated>{_stamp(p.updated)}</updated>",
            f'    <link href="https://arxiv.org/abs/{v}" rel="alternate" type="text/html"/>',
            f'    <link href="{self.url}/pdf/{v}" rel="related" type="application/pdf" title="pdf"/>',
            f"    <summary>{escape(p.abstract)}</summary>",
            *(f'    <category term="{c}" scheme="http://arxiv.org/schemas/atom"/>' for c in p.categories),
            f"    <published>{_stamp(p.published)}</published>",
        ]
        if p.comment:
            out.append(f"    <arxiv:comment>{escape(p.comment)}</arxiv:comment>")
        out.append(f'    <arxiv:primary_category term="{p.categories[0]}"/>')
        if p.journal_ref:
            out.append(f"    <arxiv:journal_ref>{escape(p.journal_ref)}</arxiv:journal_ref>")
        for name in p.authors:
            out.append("    <author>")
            out.append(f"      <name>{escape(name)}</name>")
            out += [f"      <arxiv:affiliation>{escape(a)}</arxiv:affiliation>" for a in p.affiliations.get(name, [])]
            out.append("    </author>")
        if p.doi:
            out.append(f"    <arxiv:doi>{escape(p.doi)}</arxiv:doi>")
            out.append(f'    <link rel="related" href={quoteattr("https://doi.org/" + p.doi)} title="doi"/>')
        out.append("  </entry>\n")
        return "\n".join(out)


def _take(queue: list[tuple[str | None, Any]], endpoint: str) -> Any:
    for i, (wanted, value) in enumerate(queue):
        if wanted in (None, endpoint):
            del queue[i]
            return value
    return None


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).astimezone(UTC)


def _moment(digits: str) -> datetime:
    return datetime.strptime(digits.ljust(12, "0"), "%Y%m%d%H%M").replace(tzinfo=UTC)


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _atom(body: str, status: int = 200) -> web.Response:
    return web.Response(status=status, body=body.encode(), content_type="application/atom+xml", charset="utf-8")


def _error_feed(bad_id: str) -> str:
    """arXiv's answer to a malformed id, as in tests/fixtures/arxiv/id_abc_*.xml."""
    now = _stamp(datetime.now(UTC))
    anchor = f"https://arxiv.org/api/errors#incorrect_id_format_for_{bad_id}"
    return f"""<?xml version='1.0' encoding='UTF-8'?>
<feed xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns="http://www.w3.org/2005/Atom">
  <id>https://arxiv.org/</id>
  <title>arXiv Search Results</title>
  <updated>{now}</updated>
  <opensearch:itemsPerPage>1</opensearch:itemsPerPage>
  <opensearch:totalResults>1</opensearch:totalResults>
  <opensearch:startIndex>0</opensearch:startIndex>
  <entry>
    <id>{escape(anchor)}</id>
    <title>Error</title>
    <updated>{now}</updated>
    <link href={quoteattr(anchor)} rel="alternate" type="text/html"/>
    <summary>incorrect id format for {escape(bad_id)}</summary>
    <author>
      <name>arXiv api core</name>
    </author>
  </entry>
</feed>
"""


def _rss_feed(name: str, day: date, items: list[tuple[FakePaper, str]]) -> str:
    """A listing feed in the layout of rss.arxiv.org (see arXiv's rss_specifications.md)."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=_NEW_YORK)
    pub = format_datetime(midnight)
    built = format_datetime((midnight + timedelta(seconds=2)).astimezone(UTC)).replace("-0000", "+0000")
    out = [
        "<?xml version='1.0' encoding='UTF-8'?>",
        '<rss xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:atom="http://www.w3.org/2005/Atom" xmlns:content="http://purl.org/rss/1.0/modules/content/" version="2.0">',
        "  <channel>",
        f"    <title>{escape(name)} updates on arXiv.org</title>",
        f"    <link>http://rss.arxiv.org/rss/{escape(name)}</link>",
        f"    <description>{escape(name)} updates on the arXiv.org e-print archive.</description>",
        f'    <atom:link href="http://rss.arxiv.org/rss/{escape(name)}" rel="self" type="application/rss+xml"/>',
        "    <docs>http://www.rssboard.org/rss-specification</docs>",
        "    <language>en-us</language>",
        f"    <lastBuildDate>{built}</lastBuildDate>",
        "    <managingEditor>rss-help@arxiv.org</managingEditor>",
        f"    <pubDate>{pub}</pubDate>",
        "    <skipDays>",
        "      <day>Sunday</day>",
        "      <day>Saturday</day>",
        "    </skipDays>",
    ]
    for p, kind in items:
        out += [
            "    <item>",
            f"      <title>{escape(p.title)}</title>",
            f"      <link>https://arxiv.org/abs/{p.arxiv_id}</link>",
            f"      <description>arXiv:{p.versioned} Announce Type: {kind} \nAbstract: {escape(' '.join(p.abstract.split()))}</description>",
            f'      <guid isPermaLink="false">oai:arXiv.org:{p.versioned}</guid>',
            *(f"      <category>{c}</category>" for c in p.categories),
            f"      <pubDate>{pub}</pubDate>",
            f"      <arxiv:announce_type>{kind}</arxiv:announce_type>",
            "      <dc:rights>http://arxiv.org/licenses/nonexclusive-distrib/1.0/</dc:rights>",
            f"      <dc:creator>{escape(', '.join(p.authors))}</dc:creator>",
            "    </item>",
        ]
    out += ["  </channel>", "</rss>", ""]
    return "\n".join(out)


# --- search_query: enough of arXiv's syntax for tests -------------------------------------------

_TOKEN = re.compile(
    r'\s*(?:(?P<lp>\()|(?P<rp>\))'
    r'|(?P<field>[A-Za-z]+):(?:"(?P<fphrase>[^"]*)"|\[(?P<range>[^\]]*)\]|(?P<fword>[^\s()"]+))'
    r'|"(?P<phrase>[^"]*)"|(?P<word>[^\s()"]+))'
)
_OPERATORS = ("AND", "OR", "ANDNOT")
Predicate = Callable[[FakePaper], bool]


def _compile_query(query: str, slack: timedelta = timedelta(0)) -> Predicate:
    """`AND`/`OR`/`ANDNOT` (AND binds tighter), parentheses, `field:term`, `field:"phrase"`,
    bare words (= all:), `submittedDate:[A TO B]` / `lastUpdatedDate:[A TO B]` (A and B as
    YYYYMMDD or YYYYMMDDHHMM, UTC, both ends included; `slack` widens the range).

    Text matches ignore case and match at word starts ("diffusion" finds "diffusions");
    `cat:cs` finds every cs.* category."""
    tokens: list[re.Match[str]] = []
    pos = 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if m is None or m.end() == pos:
            if query[pos:].strip():
                raise ValueError(f"cannot read {query[pos:]!r}")
            break
        tokens.append(m)
        pos = m.end()
    i = 0

    def peek_op() -> str | None:
        word = tokens[i].group("word") if i < len(tokens) else None
        return word if word in _OPERATORS else None

    def expr() -> Predicate:
        nonlocal i
        left = conj()
        while peek_op() == "OR":
            i += 1
            right = conj()
            left = (lambda a, b: lambda p: a(p) or b(p))(left, right)
        return left

    def conj() -> Predicate:
        nonlocal i
        left = unary()
        while i < len(tokens) and not tokens[i].group("rp") and peek_op() != "OR":
            op = peek_op()
            if op:
                i += 1
            right = unary()
            if op == "ANDNOT":
                left = (lambda a, b: lambda p: a(p) and not b(p))(left, right)
            else:
                left = (lambda a, b: lambda p: a(p) and b(p))(left, right)
        return left

    def unary() -> Predicate:
        nonlocal i
        if i >= len(tokens):
            raise ValueError("query ends too early")
        t = tokens[i]
        i += 1
        if t.group("lp"):
            inner = expr()
            if i >= len(tokens) or not tokens[i].group("rp"):
                raise ValueError("missing )")
            i += 1
            return inner
        if t.group("rp") or t.group("word") in _OPERATORS:
            raise ValueError(f"unexpected {t.group(0).strip()!r}")
        if t.group("field"):
            return _field(t.group("field"), t.group("fphrase") or t.group("fword"), t.group("range"), slack)
        return _field("all", t.group("phrase") or t.group("word"), None, slack)

    result = expr()
    if i != len(tokens):
        raise ValueError(f"unexpected {tokens[i].group(0).strip()!r}")
    return result


def _field(name: str, value: str | None, span: str | None, slack: timedelta) -> Predicate:
    if span is not None:
        attr = {"submittedDate": "published", "lastUpdatedDate": "updated"}.get(name)
        lo, _, hi = (s.strip() for s in span.partition(" TO "))
        if attr is None or not all(b.isdigit() and len(b) in (8, 12) for b in (lo, hi)):
            raise ValueError(f"bad range {name}:[{span}]")
        start = _moment(lo) - slack
        end = _moment(hi) + (timedelta(minutes=1) if len(hi) == 12 else timedelta(days=1)) + slack
        return lambda p: start <= getattr(p, attr) < end
    text = value or ""
    if name == "cat":
        want = text.rstrip("*").rstrip(".").lower()
        return lambda p: any(c.lower() == want or c.lower().startswith(want + ".") for c in p.categories)
    if name == "id":
        return lambda p: p.arxiv_id == text or p.versioned == text
    words = re.findall(r"\w+", text.replace("_", " "))
    if not words:
        raise ValueError(f"empty term after {name}:")
    pattern = re.compile(r"(?<!\w)" + r"\W+".join(map(re.escape, words)), re.I)
    fields: dict[str, Callable[[FakePaper], list[str]]] = {
        "ti": lambda p: [p.title],
        "abs": lambda p: [p.abstract],
        "au": lambda p: p.authors,
        "co": lambda p: [p.comment or ""],
        "jr": lambda p: [p.journal_ref or ""],
        "all": lambda p: [p.title, p.abstract, p.comment or "", *p.authors],
    }
    if name not in fields:
        raise ValueError(f"unknown field {name}:")
    get = fields[name]
    return lambda p: any(pattern.search(s) for s in get(p))
