"""Papers from arXiv: the export API (through the `arxiv` package) and the daily listing feeds.

Every request, including each page and each retry, first takes a slot from the shared
RateLimiter. The `arxiv` package is synchronous, so it runs in at most two worker threads;
its own delay and retries are switched off and ours (tenacity) are used instead, so that
one policy covers the API and the listing feeds alike.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import arxiv
import httpx
import requests
from lxml import etree
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from bot.ids import ArxivId, BadArxivId, parse_arxiv_id, split_entry_id
from bot.models import Paper
from bot.ratelimit import RateLimiter

log = logging.getLogger(__name__)

T = TypeVar("T")

PAGE_SIZE = 100  # results per API request; also the id_list batch size
_USER_AGENT = "paperbot/0.1 (arXiv digest bot)"
# arXiv announces on New York time; a feed without pubDate is dated by its build time there.
_ARXIV_TZ = ZoneInfo("America/New_York")
_NS = {"arxiv": "http://arxiv.org/schemas/atom", "dc": "http://purl.org/dc/elements/1.1/"}
_DESCRIPTION = re.compile(
    r"^\s*arXiv:(?P<id>\S+)\s+Announce Type:\s*(?P<type>\S+)\s*(?:Abstract:\s*)?(?P<abstract>.*)$", re.S
)


class PaperNotFound(LookupError):
    def __init__(self, aid: ArxivId | str) -> None:
        super().__init__(f"arXiv has no paper {aid}")
        self.arxiv_id = str(aid)


class ArxivUnavailable(RuntimeError):
    """arXiv did not give a usable answer (after retries, where retrying makes sense)."""


class ArxivRejected(ArxivUnavailable):
    """arXiv answered 400: it could not make sense of the request."""


class GarbledAnswer(requests.RequestException):
    """The export API answered 200 with something that is not an Atom feed (a blank body, an
    HTML page): arXiv is having trouble, which is worth a retry, never "no such paper"."""


class _Incomplete(Exception):
    """An answer without some of the papers a listing announced (retried: the API lags the listing)."""


_ATOM_FEED = "{http://www.w3.org/2005/Atom}feed"


def check_atom(content: bytes) -> None:
    """Raise GarbledAnswer unless `content` is a well-formed Atom feed (with or without entries)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(content, parser=parser)
    except etree.XMLSyntaxError:
        root = None
    if root is None or root.tag != _ATOM_FEED:
        head = content[:60].decode("utf-8", "replace").strip() or "an empty body"
        raise GarbledAnswer(f"the API answered with something other than an Atom feed: {head!r}")


@dataclass
class ListingItem:
    arxiv_id: str
    version: int
    title: str
    abstract: str
    authors: list[str]
    categories: list[str]
    announce_type: str  # "new" | "cross" | "replace" | "replace-cross"


@dataclass
class Listing:
    announced: dt.date | None  # None when the feed carries no date
    items: list[ListingItem] = field(default_factory=list)  # empty on days without an announcement


def _squash(text: str | None) -> str:
    return " ".join((text or "").split())


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def paper_from_result(r: arxiv.Result) -> Paper:
    aid = split_entry_id(r.entry_id)
    abs_url = next((link.href for link in r.links if link.rel == "alternate"), r.entry_id)
    return Paper(
        arxiv_id=aid.base,
        version=aid.version or 1,
        title=_squash(r.title),
        authors=[_squash(a.name) for a in r.authors],
        abstract=_squash(r.summary),
        categories=_unique([r.primary_category, *r.categories]),
        published=_utc(r.published),
        updated=_utc(r.updated),
        abs_url=abs_url,
        pdf_url=r.pdf_url,
        comment=_squash(r.comment) or None,
        journal_ref=_squash(r.journal_ref) or None,
        doi=_squash(r.doi) or None,
        affiliations=_unique([_squash(af) for a in r.authors for af in a.affiliation]),
    )


def parse_listing(content: bytes) -> Listing:
    """Parse one of arXiv's RSS 2.0 listing feeds; ValueError when it is not one."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(content, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"not an XML document: {exc}") from None
    channel = root.find("channel")
    if root.tag != "rss" or channel is None:
        raise ValueError(f"not an RSS feed (root element <{root.tag}>)")
    return Listing(_announced(channel), [item for el in channel.iterfind("item") if (item := _item(el))])


def _announced(channel: Any) -> dt.date | None:
    for tag in ("pubDate", "lastBuildDate"):
        text = channel.findtext(tag)
        if not text:
            continue
        try:
            stamp = parsedate_to_datetime(text.strip())
        except (TypeError, ValueError):
            continue
        # pubDate is midnight in New York with its offset; lastBuildDate is in UTC.
        return stamp.date() if tag == "pubDate" else stamp.astimezone(_ARXIV_TZ).date()
    return None


def _item(el: Any) -> ListingItem | None:
    description = el.findtext("description") or ""
    m = _DESCRIPTION.match(description)
    guid = (el.findtext("guid") or "").strip()
    raw_id = guid.rsplit(":", 1)[-1] if guid.startswith("oai:") else (m.group("id") if m else "")
    try:
        aid = parse_arxiv_id(raw_id or el.findtext("link") or "")
    except BadArxivId:
        log.warning("listing item without a usable arXiv id skipped: %r", guid or raw_id)
        return None
    announce = (el.findtext("arxiv:announce_type", namespaces=_NS) or (m.group("type") if m else "new"))
    creators = el.findtext("dc:creator", namespaces=_NS) or ""
    return ListingItem(
        arxiv_id=aid.base,
        version=aid.version or 1,
        title=_squash(el.findtext("title")),
        abstract=_squash(m.group("abstract") if m else description),
        authors=[re.sub(r"^and\s+", "", a.strip()) for a in creators.split(",") if a.strip()],
        categories=_unique([_squash(c.text) for c in el.iterfind("category")]),
        announce_type=announce.strip().lower(),
    )


class _LimitedSession(requests.Session):
    """The session the `arxiv` package uses: our limiter before every request, and a timeout."""

    def __init__(self, limiter: RateLimiter, timeout: float) -> None:
        super().__init__()
        self._limiter = limiter
        self._timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self._limiter.wait_sync()
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        response = super().request(method, url, *args, **kwargs)
        if response.status_code == 200:
            # The `arxiv` package reads a blank body or an HTML page as "no results".
            check_atom(response.content)
        return response


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, arxiv.HTTPError):
        return exc.status
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code
    return None


def _transient(exc: BaseException) -> bool:
    status = _status(exc)
    if status is not None:
        return status == 429 or status >= 500
    return isinstance(
        exc,
        (
            arxiv.UnexpectedEmptyPageError,
            GarbledAnswer,
            requests.ConnectionError,
            requests.Timeout,
            httpx.TransportError,
        ),
    )


def _describe(exc: BaseException | None) -> str:
    status = _status(exc)
    if status is not None:
        return f"HTTP {status}"
    if isinstance(exc, (requests.Timeout, httpx.TimeoutException)):
        return "timed out"
    if isinstance(exc, (requests.ConnectionError, httpx.TransportError)):
        return "could not connect"
    if isinstance(exc, arxiv.UnexpectedEmptyPageError):
        return "an unexpectedly empty page of results"
    if isinstance(exc, GarbledAnswer):
        return "an answer that is not an Atom feed"
    return type(exc).__name__


class ArxivSource:
    def __init__(
        self,
        api_url: str,
        rss_url: str,
        limiter: RateLimiter,
        *,
        timeout: float = 30.0,
        attempts: int = 4,
        backoff_base: float = 2.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.rss_url = rss_url.rstrip("/")
        self.limiter = limiter
        self._attempts = max(1, attempts)
        self._backoff_base = backoff_base
        self._session = _LimitedSession(limiter, timeout)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="arxiv")
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=timeout, follow_redirects=True, headers={"User-Agent": _USER_AGENT}
        )

    # --- the export API ----------------------------------------------------------------------

    async def get_paper(self, aid: ArxivId) -> Paper:
        papers = await self._lookup([aid.versioned])
        if not papers:
            raise PaperNotFound(aid)
        return papers[0]

    async def get_papers(self, ids: list[str]) -> list[Paper]:
        """The papers arXiv knows among `ids` (versions kept where given); unknown ids are skipped."""
        wanted = _unique([parse_arxiv_id(i).versioned for i in ids])
        papers: list[Paper] = []
        for start in range(0, len(wanted), PAGE_SIZE):
            papers += await self._lookup(wanted[start : start + PAGE_SIZE])
        return papers

    async def get_announced(self, ids: list[str]) -> list[Paper]:
        """The papers a listing announced: an answer that lacks some of them (arXiv's API lags its
        listing by minutes to hours, and sometimes answers 200 with no entries) is retried like an
        error, for the missing ones only; after the retries, what the API had (the caller keeps the
        rest for its next poll). ArxivUnavailable when the API does not answer at all."""
        wanted = _unique([parse_arxiv_id(i).versioned for i in ids])
        papers: dict[str, Paper] = {}
        for start in range(0, len(wanted), PAGE_SIZE):
            chunk = wanted[start : start + PAGE_SIZE]

            async def attempt(chunk: list[str] = chunk) -> None:
                missing = [i for i in chunk if parse_arxiv_id(i).base not in papers]
                for paper in await self._lookup(missing):
                    papers[paper.arxiv_id] = paper
                still = [i for i in missing if parse_arxiv_id(i).base not in papers]
                if still:
                    raise _Incomplete(f"{len(still)} announced paper(s) not in the API's answer")

            retrying = AsyncRetrying(
                retry=retry_if_exception_type(_Incomplete),
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=self._backoff_base, max=60),
                reraise=True,
            )
            try:
                await retrying(attempt)
            except _Incomplete as exc:
                log.info("the arXiv API: %s after %d attempts", exc, self._attempts)
        return list(papers.values())

    async def search(self, query: str, max_results: int = 50) -> list[Paper]:
        """Newest submissions first."""
        search = arxiv.Search(
            query=query,
            max_results=max_results,
            sort_by=arxiv.SortCriterion.SubmittedDate,
            sort_order=arxiv.SortOrder.Descending,
        )
        return await self._api(search)

    async def search_submitted_on(self, query: str, day: dt.date, max_results: int = 200) -> list[Paper]:
        """Papers matching `query` whose first version was submitted on `day` (UTC)."""
        d = day.strftime("%Y%m%d")
        papers = await self.search(f"({query}) AND submittedDate:[{d}0000 TO {d}2359]", max_results)
        # The API's date filter is coarse; the day is decided here.
        return [p for p in papers if p.published.date() == day]

    async def _lookup(self, ids: list[str]) -> list[Paper]:
        try:
            return await self._api(arxiv.Search(id_list=ids, max_results=len(ids)))
        except ArxivRejected:
            # arXiv answers 400 to an id_list with an id it cannot parse.
            raise BadArxivId(ids[0] if len(ids) == 1 else ", ".join(ids)) from None

    async def _api(self, search: arxiv.Search) -> list[Paper]:
        def fetch() -> list[arxiv.Result]:
            # A client per call so a 3-paper preview asks for 3 results, not a page of 100;
            # all of them share the rate-limited session.
            page = min(PAGE_SIZE, search.max_results or PAGE_SIZE)
            client = arxiv.Client(page_size=page, delay_seconds=0, num_retries=0)
            client.query_url_format = self.api_url + "?{}"
            client._session = self._session  # the package has no public hook for its session
            return list(client.results(search))

        loop = asyncio.get_running_loop()
        results = await self._retrying(
            "the arXiv API", self.api_url, lambda: loop.run_in_executor(self._pool, fetch)
        )
        return [paper_from_result(r) for r in results]

    # --- listing feeds -----------------------------------------------------------------------

    async def fetch_listing(self, feeds: list[str]) -> Listing:
        """The latest announcement for the given categories, from `{rss_url}/{f1}+{f2}...`."""
        url = f"{self.rss_url}/{'+'.join(feeds)}"

        async def get() -> bytes:
            await self.limiter.wait()
            resp = await self._http.get(url)
            resp.raise_for_status()
            return resp.content

        content = await self._retrying("the arXiv listing feed", url, get)
        try:
            # A listing of thousands of items takes a while to parse: not on the event loop.
            return await asyncio.to_thread(parse_listing, content)
        except ValueError as exc:
            raise ArxivUnavailable(f"the arXiv listing feed at {_host(url)} sent no usable feed: {exc}") from None

    # --- shared ------------------------------------------------------------------------------

    async def _retrying(self, what: str, url: str, call: Callable[[], Awaitable[T]]) -> T:
        tries = 0

        async def counted() -> T:
            nonlocal tries
            tries += 1
            return await call()

        def note(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.info("%s: %s, retrying (attempt %d of %d)", what, _describe(exc), tries, self._attempts)

        retrying = AsyncRetrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff_base, max=60),
            before_sleep=note,
            reraise=True,
        )
        try:
            return await retrying(counted)
        except (arxiv.ArxivError, requests.RequestException, httpx.HTTPError) as exc:
            if _status(exc) == 400:
                raise ArxivRejected(f"{what} at {_host(url)} rejected the request (HTTP 400)") from None
            tail = f" after {tries} attempts" if tries > 1 else ""
            raise ArxivUnavailable(f"{what} at {_host(url)}: {_describe(exc)}{tail}") from None

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()
        if self._own_http:
            await self._http.aclose()


def _host(url: str) -> str:
    # Messages name the host only: arXiv URLs hold no secrets, but users need no query strings.
    return urlsplit(url).netloc or url


__all__ = [
    "ArxivSource",
    "ArxivUnavailable",
    "Listing",
    "ListingItem",
    "PaperNotFound",
    "paper_from_result",
    "parse_listing",
]
