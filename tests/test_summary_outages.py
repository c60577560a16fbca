"""Summaries through LLM outages and missing paper text: the breaker, stand-ins, retryDelay, one redo.

The real google-genai client against FakeGemini over HTTP, a real SQLite store, and for the
paper's text the real PdfService against a PDF server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.models import Paper, PaperText
from bot.pdf import PdfService
from bot.ratelimit import RateLimiter
from bot.store import Store
from bot.summarize import ExtractiveSummarizer, SummarizerError, SummaryService
from bot.summarize.breaker import BreakerState, CircuitBreaker
from bot.summarize.extractive import has_url, split_sentences
from bot.summarize.gemini import retry_delay
from tests.fakes.gemini import FakeGemini
from tests.pdfgen import build_pdf, text_page
from tests.test_pdf import PdfServer
from tests.test_summarize import KEY, MODEL, PAPER, TESTING, fake, gemini  # noqa: F401 - fixtures shared with it

GEMINI = f"gemini:{MODEL}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingExtractive(ExtractiveSummarizer):
    """The real extractive summarizer, counting the summaries it makes."""

    def __init__(self) -> None:
        self.calls = 0

    async def summarize(self, paper: Paper, language: str, full_text: str | None):  # type: ignore[no-untyped-def]
        self.calls += 1
        return await super().summarize(paper, language, full_text)


def papers(n: int) -> list[Paper]:
    return [dataclasses.replace(PAPER, arxiv_id=f"2005.{14200 + i}") for i in range(n)]


# --- Gemini's retryDelay --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "seconds"),
    [
        ({"error": {"code": 429, "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                              "retryDelay": "18.9s"}]}}, 18.9),
        ({"error": {"details": [{"@type": "x.QuotaFailure"}, {"retryDelay": "7s"}]}}, 7.0),
        ({"error": {"code": 503, "status": "UNAVAILABLE"}}, None),
        ({"error": {"details": [{"retryDelay": "soon"}]}}, None),
        ("<html>", None),
        ([], None),
    ],
)
def test_retry_delay_is_read_from_googles_error_body(body: object, seconds: float | None) -> None:
    assert retry_delay(body) == seconds


def test_retry_after_header_is_the_second_choice() -> None:
    assert retry_delay({"error": {}}, {"Retry-After": "12"}) == 12.0
    assert retry_delay({"error": {"details": [{"retryDelay": "3s"}]}}, {"Retry-After": "12"}) == 3.0


async def test_a_429_with_retry_delay_is_waited_out_before_the_next_attempt(
    store: Store, fake: FakeGemini, gemini, caplog: pytest.LogCaptureFixture
) -> None:
    """Gemini's quota error says how long to wait; the backoff alone (~0.01 s here) would be too short."""
    fake.script(FakeGemini.error(429, retry_delay="0.6s"))
    started = time.monotonic()
    summary = await SummaryService(store, gemini(attempts=3)).summarize(PAPER, "en")
    assert time.monotonic() - started >= 0.6
    assert summary.generated_by == GEMINI and fake.calls == 2
    [retry] = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert "429 RESOURCE_EXHAUSTED" in retry and retry.endswith("retrying in 0.6 s")


# --- the circuit breaker --------------------------------------------------------------------


async def test_in_an_outage_only_the_first_summaries_pay_for_retries(store: Store, fake: FakeGemini, gemini) -> None:
    fake.default = FakeGemini.error(503)
    clock = Clock()
    breaker = CircuitBreaker(GEMINI, threshold=3, cool_down=300, clock=clock)
    extractive = CountingExtractive()
    service = SummaryService(store, gemini(attempts=3), fallback=extractive, breaker=breaker)

    batch = papers(10)
    started = time.monotonic()
    results = [await service.summarize(p, "zh") for p in batch]
    assert fake.calls == 9  # three summaries of three attempts each; then the breaker opened
    assert breaker.state == BreakerState.OPEN
    assert time.monotonic() - started < 5
    assert all(r.generated_by == "extractive" and r.stand_in_for == GEMINI for r in results)
    assert all(r.content.summary in split_sentences(PAPER.abstract) for r in results)
    stored = await store.get_summary(batch[9], "en", "extractive", ExtractiveSummarizer.prompt_version)
    assert stored is not None and stored.stand_in_for == GEMINI

    # While it is open, a stored stand-in is the answer as it is: not made again, Gemini not asked.
    assert extractive.calls == 10
    again = await service.summarize(batch[0], "zh")
    assert again.content == results[0].content and again.stand_in_for == GEMINI
    assert extractive.calls == 10 and fake.calls == 9

    # After the cool-down one trial call decides. Gemini is back: the stand-ins are replaced one by one.
    fake.default = None
    clock.now += 301
    upgraded = await service.summarize(batch[0], "zh")
    assert upgraded.generated_by == GEMINI and upgraded.language == "zh" and upgraded.stand_in_for is None
    assert breaker.state == BreakerState.CLOSED
    assert (await service.summarize(batch[1], "zh")).generated_by == GEMINI
    assert fake.calls == 11
    assert (await service.cached(batch[0], "zh")) is not None


async def test_a_failed_trial_opens_the_breaker_for_another_cool_down(store: Store, fake: FakeGemini, gemini) -> None:
    fake.default = FakeGemini.error(500)
    clock = Clock()
    breaker = CircuitBreaker(GEMINI, threshold=2, cool_down=60, clock=clock)
    service = SummaryService(store, gemini(attempts=2), fallback=ExtractiveSummarizer(), breaker=breaker)
    a, b, c = papers(3)
    await service.summarize(a, "en")
    await service.summarize(b, "en")
    assert fake.calls == 4 and breaker.state == BreakerState.OPEN

    clock.now += 61
    trial = await service.summarize(c, "en")  # the one trial: two attempts, then open again at once
    assert trial.generated_by == "extractive" and fake.calls == 6
    assert breaker.state == BreakerState.OPEN
    clock.now += 30
    await service.summarize(a, "de")
    assert fake.calls == 6


async def test_concurrent_requests_queued_behind_failures_fall_back_at_once(
    store: Store, fake: FakeGemini, gemini
) -> None:
    """Requests waiting for a slot look at the breaker when they get one, not when they arrived."""
    fake.default = FakeGemini.error(503, delay=0.05)
    breaker = CircuitBreaker(GEMINI, threshold=1, cool_down=300, clock=Clock())
    service = SummaryService(
        store, gemini(attempts=2), fallback=ExtractiveSummarizer(), max_concurrency=2, breaker=breaker
    )
    results = await asyncio.gather(*(service.summarize(p, "en") for p in papers(8)))
    assert fake.calls == 4  # the first two (in flight together) failed; the six queued did not ask
    assert [r.generated_by for r in results] == ["extractive"] * 8


async def test_without_a_fallback_an_open_breaker_is_a_clear_error(store: Store, fake: FakeGemini, gemini) -> None:
    fake.default = FakeGemini.error(503)
    breaker = CircuitBreaker(GEMINI, threshold=1, cool_down=300, clock=Clock())
    service = SummaryService(store, gemini(attempts=1), breaker=breaker)
    with pytest.raises(SummarizerError, match="503"):
        await service.summarize(PAPER, "en")
    with pytest.raises(SummarizerError, match="failed repeatedly and is paused; try again in a few minutes"):
        await service.summarize(papers(1)[0], "en")
    assert fake.calls == 1


def test_breaker_cancelled_trial_frees_the_slot() -> None:
    clock = Clock()
    breaker = CircuitBreaker("x", threshold=1, cool_down=10, clock=clock)
    assert breaker.allow()
    breaker.failure()
    assert not breaker.allow() and breaker.skipping()
    clock.now += 10
    assert breaker.allow() and breaker.state == BreakerState.HALF_OPEN
    assert not breaker.allow()  # one trial at a time
    breaker.abandon()
    assert breaker.allow()
    breaker.success()
    assert breaker.state == BreakerState.CLOSED and breaker.failures == 0


# --- a summary made without the paper's text is made again once -------------------------------


@pytest.fixture
def pdf_server() -> Iterator[PdfServer]:
    s = PdfServer()
    with s.server:
        yield s


def paper_pdf() -> bytes:
    return build_pdf([text_page(["PDF-TEXT-MARKER: our fuzzer found twelve attacks in an hour on the testbed."]
                                + ["Filler line of the introduction, number %d, for the text layer." % i
                                   for i in range(30)])])


async def test_a_summary_made_while_the_pdf_timed_out_is_made_again_once_with_the_text(
    tmp_path: Path, store: Store, fake: FakeGemini, gemini, pdf_server: PdfServer
) -> None:
    pdf_server.files["p.pdf"] = paper_pdf()
    pdf_server.delay = 1.0
    pdfs = PdfService(tmp_path / "cache", RateLimiter(0), timeout=0.3, retry_failed_after=0)
    service = SummaryService(store, gemini(), fallback=ExtractiveSummarizer(), text_source=pdfs.paper_text)
    paper = dataclasses.replace(PAPER, pdf_url=pdf_server.url("p.pdf"))
    try:
        first = await service.summarize(paper, "en")
        assert first.generated_by == GEMINI and not first.full_text_used and first.text_retry
        assert "PDF-TEXT-MARKER" not in fake.prompts[-1]

        pdf_server.delay = 0
        second = await service.summarize(paper, "en")
        assert fake.calls == 2 and "PDF-TEXT-MARKER" in fake.prompts[-1]
        assert second.full_text_used and not second.text_retry
        stored = await store.get_summary(paper, "en", GEMINI, second.prompt_version)
        assert stored is not None and stored.full_text_used and not stored.text_retry
        assert await store.count_summaries() == 1

        await service.summarize(paper, "en")
        assert fake.calls == 2 and pdf_server.hits("p.pdf") == 2
    finally:
        await pdfs.aclose()


async def test_a_summary_waiting_for_text_keeps_it_for_good_when_the_pdf_turns_out_bad(
    tmp_path: Path, store: Store, fake: FakeGemini, gemini, pdf_server: PdfServer
) -> None:
    pdf_server.files["b.pdf"] = build_pdf([text_page(["secret"])], encrypt=True)
    pdf_server.delay = 1.0
    pdfs = PdfService(tmp_path / "cache", RateLimiter(0), timeout=0.3, retry_failed_after=0)
    service = SummaryService(store, gemini(), text_source=pdfs.paper_text)
    paper = dataclasses.replace(PAPER, pdf_url=pdf_server.url("b.pdf"))
    try:
        assert (await service.summarize(paper, "en")).text_retry
        pdf_server.delay = 0
        kept = await service.summarize(paper, "en")  # the PDF came, but it cannot be read
        assert fake.calls == 1 and not kept.text_retry and not kept.full_text_used
        assert pdfs.bad_reason(paper) is not None
        await service.summarize(paper, "en")
        assert fake.calls == 1 and pdf_server.hits("b.pdf") == 2
    finally:
        await pdfs.aclose()


async def test_a_missing_pdf_link_is_no_reason_to_make_a_summary_again(store: Store, fake: FakeGemini, gemini) -> None:
    async def no_link(paper: Paper) -> PaperText:
        return PaperText(None, retry=False)

    service = SummaryService(store, gemini(), text_source=no_link)
    assert not (await service.summarize(PAPER, "en")).text_retry
    await service.summarize(PAPER, "en")
    assert fake.calls == 1


async def test_a_stand_in_made_without_text_is_remade_with_it_while_the_primary_is_down(
    store: Store, fake: FakeGemini, gemini
) -> None:
    texts = [PaperText(None, retry=True), PaperText("Previous fuzzers for industrial control systems fail to "
                                                    "find attacks within a practical time budget.")]

    async def source(paper: Paper) -> PaperText:
        return texts.pop(0) if len(texts) > 1 else texts[0]

    fake.default = FakeGemini.error(503)
    breaker = CircuitBreaker(GEMINI, threshold=1, cool_down=300, clock=Clock())
    service = SummaryService(store, gemini(attempts=1), fallback=ExtractiveSummarizer(), text_source=source,
                             breaker=breaker)
    short = dataclasses.replace(PAPER, abstract="We propose a fuzzing method for water treatment plants.")
    first = await service.summarize(short, "en")
    assert first.generated_by == "extractive" and first.text_retry and not first.full_text_used
    second = await service.summarize(short, "en")
    assert second.full_text_used and not second.text_retry
    assert second.content.prior_work.startswith("Previous fuzzers for industrial control systems fail")
    assert fake.calls == 1


# --- CPU work off the event loop ----------------------------------------------------------------


async def test_extractive_summary_runs_off_the_event_loop() -> None:
    """The loop keeps ticking while a long paper text is summarized."""
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    text = " ".join(f"Sentence number {i} describes the fuzzer and its experiments in detail." for i in range(3000))
    task = asyncio.create_task(ticker())
    content = await ExtractiveSummarizer().summarize(TESTING[0], "en", text)
    done = True
    await task
    assert content.key_takeaways and ticks > 10


@pytest.mark.parametrize(
    "text",
    [
        "a." * 20_000,  # one 40,000-character token of dots: the old URL pattern backtracked on each
        "." * 40_000 + " The end.",
        "e.g. " * 8_000,
        "J. " * 12_000 + "Doe.",
        "\n" * 40_000 + "References\n",
        "fig-" + "\n" * 40_000,
    ],
    ids=["dotted-token", "dot-run", "abbreviations", "initials", "blank-lines", "hyphen-then-blank"],
)
async def test_pathological_text_is_summarized_in_linear_time(text: str) -> None:
    """Inputs on which the former patterns took seconds to minutes; a generous bound, results checked."""
    paper = dataclasses.replace(PAPER, abstract=PAPER.abstract + " " + text)
    started = time.monotonic()
    content = await ExtractiveSummarizer().summarize(paper, "en", text)
    assert time.monotonic() - started < 3
    assert content.summary and 3 <= len(content.key_takeaways) <= 8


def test_has_url() -> None:
    assert has_url("Code at https://github.com/a/b.")
    assert has_url("see www.example.org for data")
    assert has_url("data: (example.com/x)")
    assert not has_url("We use e.g. Fig. 2 and 3.5 percent.")
    assert not has_url("a." * 20_000)
    assert not has_url("the .com/ bubble")


# --- the store: migration 4 ----------------------------------------------------------------------


async def test_summaries_stored_before_migration_4_are_final_and_the_marks_round_trip(tmp_path: Path) -> None:
    import aiosqlite

    path = tmp_path / "old.db"
    db = await aiosqlite.connect(str(path), isolation_level=None)
    db.row_factory = aiosqlite.Row
    old = Store(db, path)
    assert await old.migrate(target=2) == [1, 2]
    await old.upsert_paper(PAPER)
    await old.execute(
        "INSERT INTO summaries(arxiv_id, version, language, model, prompt_version, content, generated_by, "
        "full_text_used, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
        (PAPER.arxiv_id, PAPER.version, "en", "extractive", "x1",
         '{"title_translated": "T", "summary": "S.", "key_takeaways": ["a", "b", "c"], "keywords": [], '
         '"background": "B", "prior_work": "P", "method": ["m"], "results": "R", "conclusion": "C"}',
         "extractive", 0, "2024-05-03T00:00:00+00:00"),
    )
    await old.close()

    async with await Store.open(path) as store:
        kept = await store.get_summary(PAPER, "en", "extractive", "x1")
        assert kept is not None and kept.content.summary == "S."
        assert kept.text_retry is False and kept.stand_in_for is None

        marked = dataclasses.replace(kept, text_retry=True, stand_in_for=GEMINI)
        await store.put_summary(marked, "extractive")
        again = await store.get_summary(PAPER, "en", "extractive", "x1")
        assert again is not None and again.text_retry and again.stand_in_for == GEMINI
        await store.clear_summary_text_retry(again, "extractive")
        cleared = await store.get_summary(PAPER, "en", "extractive", "x1")
        assert cleared is not None and not cleared.text_retry and cleared.stand_in_for == GEMINI
        assert await store.count_summaries() == 1
