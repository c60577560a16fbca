"""Summaries: the real google-genai client against FakeGemini over HTTP, a real SQLite store."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree
from pydantic import SecretStr

from bot.models import Paper
from bot.store import Store
from bot.summarize import (
    ExtractiveSummarizer,
    GeminiSummarizer,
    SummarizerError,
    SummaryService,
    language_name,
    normalize_language,
)
from bot.summarize.extractive import NO_PRIOR_WORK, NO_RESULTS, split_sentences
from tests.fakes.gemini import FakeGemini

FIXTURES = Path(__file__).parent / "fixtures" / "arxiv"
KEY = "AIzaFAKE-0123456789-abcdefghij"
MODEL = "gemini-2.5-flash"
_NS = {"a": "http://www.w3.org/2005/Atom", "arxiv": "http://arxiv.org/schemas/atom"}


def fixture_papers(name: str) -> list[Paper]:
    """The entries of a recorded arXiv API response."""
    papers = []
    for e in etree.parse(str(FIXTURES / name)).findall("a:entry", _NS):
        base, _, version = e.findtext("a:id", namespaces=_NS).rsplit("/", 1)[1].rpartition("v")
        text = lambda tag: " ".join((e.findtext(tag, namespaces=_NS) or "").split())  # noqa: E731
        papers.append(
            Paper(
                arxiv_id=base,
                version=int(version),
                title=text("a:title"),
                authors=[a.findtext("a:name", namespaces=_NS) for a in e.findall("a:author", _NS)],
                abstract=text("a:summary"),
                categories=[c.get("term") for c in e.findall("a:category", _NS)],
                published=datetime.fromisoformat(text("a:published").replace("Z", "+00:00")),
                updated=datetime.fromisoformat(text("a:updated").replace("Z", "+00:00")),
                abs_url=e.findtext("a:id", namespaces=_NS),
                comment=text("arxiv:comment") or None,
            )
        )
    return papers


TESTING = fixture_papers("q_testing_s0_m10_bc5a6c384fe9.xml")
PAPER = TESTING[2]  # 2005.14124v2, "Active Fuzzing for Testing and Securing Cyber-Physical Systems"

# arXiv:2405.01496v1 as the seed post /work/shared/seed/000_c486eba2ae8c9293.txt quotes it
# (abstract and comment verbatim; note the missing space in "qualitatively.The code").
LOCINV = Paper(
    arxiv_id="2405.01496",
    version=1,
    title="LocInv: Localization-aware Inversion for Text-Guided Image Editing",
    authors=["Chuanming Tang", "Kai Wang", "Fei Yang", "Joost van de Weijer"],
    abstract=(
        "Large-scale Text-to-Image (T2I) diffusion models demonstrate significant generation capabilities "
        "based on textual prompts. Based on the T2I diffusion models, text-guided image editing research aims "
        "to empower users to manipulate generated images by altering the text prompts. However, existing image "
        "editing techniques are prone to editing over unintentional regions that are beyond the intended target "
        "area, primarily due to inaccuracies in cross-attention maps. To address this problem, we propose "
        "Localization-aware Inversion (LocInv), which exploits segmentation maps or bounding boxes as extra "
        "localization priors to refine the cross-attention maps in the denoising phases of the diffusion "
        "process. Through the dynamic updating of tokens corresponding to noun words in the textual input, we "
        "are compelling the cross-attention maps to closely align with the correct noun and adjective words in "
        "the text prompt. Based on this technique, we achieve fine-grained image editing over particular "
        "objects while preventing undesired changes to other regions. Our method LocInv, based on the publicly "
        "available Stable Diffusion, is extensively evaluated on a subset of the COCO dataset, and consistently "
        "obtains superior results both quantitatively and qualitatively.The code will be released at "
        "https://github.com/wangkai930418/DPL "
    ),
    categories=["cs.CV"],
    published=datetime(2024, 5, 2, tzinfo=UTC),
    updated=datetime(2024, 5, 2, tzinfo=UTC),
    abs_url="http://arxiv.org/abs/2405.01496v1",
    comment="Accepted by CVPR 2024 Workshop AI4CC",
)


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini() as f:
        yield f


@pytest.fixture
async def gemini(fake: FakeGemini) -> AsyncIterator[Callable[..., GeminiSummarizer]]:
    made: list[GeminiSummarizer] = []

    def make(**kw: object) -> GeminiSummarizer:
        options: dict[str, object] = {"base_url": fake.url, "timeout": 10.0, "backoff_base": 0.01, **kw}
        g = GeminiSummarizer(SecretStr(KEY), MODEL, **options)  # type: ignore[arg-type]
        made.append(g)
        return g

    yield make
    for g in made:
        await g.aclose()


# --- the service with Gemini -------------------------------------------------------------


async def test_cache_hit_makes_no_call(store: Store, fake: FakeGemini, gemini, caplog) -> None:
    caplog.set_level(logging.INFO, logger="bot.summarize")
    service = SummaryService(store, gemini(), fallback=ExtractiveSummarizer())
    assert await service.cached(PAPER, "zh") is None

    first = await service.summarize(PAPER, "Chinese")
    assert fake.calls == 1
    assert first.generated_by == f"gemini:{MODEL}" and first.language == "zh"
    assert first.content.summary.startswith("[Chinese (Simplified)] One sentence about Active Fuzzing")
    calls = [r.getMessage() for r in caplog.records if r.name == "bot.summarize.service" and r.levelno == logging.INFO]
    assert len(calls) == 1 and "2005.14124v2" in calls[0] and " zh " in calls[0] and " s" in calls[0]

    # Same key through another spelling of the language, and through a new service on the same database.
    again = await service.summarize(PAPER, "zh-CN")
    restarted = SummaryService(store, gemini(), fallback=ExtractiveSummarizer())
    assert (await restarted.cached(PAPER, "中文")) is not None
    third = await restarted.summarize(PAPER, "zh")
    assert fake.calls == 1
    assert again.content == first.content == third.content
    assert await store.count_summaries() == 1

    # Another language or another version is another summary.
    await service.summarize(PAPER, "en")
    newer = dataclasses.replace(PAPER, version=3)
    await service.summarize(newer, "en")
    assert fake.calls == 3
    assert await store.count_summaries() == 3


async def test_concurrent_requests_share_one_call(store: Store, fake: FakeGemini, gemini) -> None:
    fake.default = FakeGemini.valid(delay=0.3)
    service = SummaryService(store, gemini())
    results = await asyncio.gather(*(service.summarize(PAPER, "de") for _ in range(10)))
    assert fake.calls == 1
    assert {r.content.summary for r in results} == {results[0].content.summary}
    assert results[0].content.summary.startswith("[German]")
    # Each caller owns its result: one caller's images do not show up in another's.
    results[0].images.append("thumb.png")
    assert results[1].images == []
    assert await store.count_summaries() == 1


async def test_semaphore_caps_concurrent_calls(store: Store, fake: FakeGemini, gemini) -> None:
    fake.default = FakeGemini.valid(delay=0.2)
    service = SummaryService(store, gemini(), max_concurrency=2)
    languages = ["en", "de", "fr", "ja", "ko"]
    results = await asyncio.gather(*(service.summarize(PAPER, lang) for lang in languages))
    assert fake.calls == 5 and fake.peak == 2
    assert [r.language for r in results] == languages


async def test_429_then_success(store: Store, fake: FakeGemini, gemini, caplog) -> None:
    caplog.set_level(logging.INFO)
    fake.script(FakeGemini.error(429), FakeGemini.error(503))
    summary = await SummaryService(store, gemini(), fallback=ExtractiveSummarizer()).summarize(PAPER, "en")
    assert fake.calls == 3
    assert summary.generated_by == f"gemini:{MODEL}"
    assert summary.content.summary.startswith("[English]")
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2 and "429" in retries[0] and "RESOURCE_EXHAUSTED" in retries[0]


async def test_timeout_is_retried(store: Store, fake: FakeGemini, gemini) -> None:
    fake.script(FakeGemini.valid(delay=1.0))
    summary = await SummaryService(store, gemini(timeout=0.3)).summarize(PAPER, "en")
    assert fake.calls == 2 and summary.generated_by == f"gemini:{MODEL}"

    fake.default = FakeGemini.valid(delay=1.0)
    with pytest.raises(SummarizerError, match=r"no answer \(TimeoutError\)"):
        await gemini(timeout=0.2, attempts=2).summarize(PAPER, "en", None)


async def test_server_error_for_good_gives_extractive_and_retries_gemini_later(
    store: Store, fake: FakeGemini, gemini
) -> None:
    fake.default = FakeGemini.error(500)
    extractive = ExtractiveSummarizer()
    service = SummaryService(store, gemini(attempts=3), fallback=extractive)

    summary = await service.summarize(PAPER, "zh")
    assert fake.calls == 3
    assert summary.generated_by == "extractive" and summary.language == "en"
    assert summary.content.summary in split_sentences(PAPER.abstract)
    assert "active fuzzing" in summary.content.summary
    # Stored under the extractive key only: the Gemini key stays empty, so Gemini is asked again.
    assert await store.get_summary(PAPER, "en", "extractive", extractive.prompt_version) is not None
    assert await service.cached(PAPER, "zh") is None

    fake.default = None
    again = await service.summarize(PAPER, "zh")
    assert fake.calls == 4
    assert again.generated_by == f"gemini:{MODEL}" and again.language == "zh"
    assert (await service.cached(PAPER, "zh")) is not None
    assert await store.count_summaries() == 2


async def test_client_error_is_not_retried(store: Store, fake: FakeGemini, gemini) -> None:
    fake.expected_key = "another-key"
    summary = await SummaryService(store, gemini(), fallback=ExtractiveSummarizer()).summarize(PAPER, "en")
    assert fake.calls == 1  # a bad key does not get better by asking again
    assert summary.generated_by == "extractive"


async def test_failure_reaches_every_waiter_and_is_not_cached(store: Store, fake: FakeGemini, gemini) -> None:
    fake.default = FakeGemini.error(503, delay=0.05)
    service = SummaryService(store, gemini(attempts=2))  # no fallback
    outcomes = await asyncio.gather(*(service.summarize(PAPER, "en") for _ in range(5)), return_exceptions=True)
    assert fake.calls == 2
    assert all(isinstance(o, SummarizerError) for o in outcomes)
    assert "2005.14124v2" in str(outcomes[0]) and "2 attempts" in str(outcomes[0]) and "503" in str(outcomes[0])
    assert await store.count_summaries() == 0

    fake.default = None
    assert (await service.summarize(PAPER, "en")).generated_by == f"gemini:{MODEL}"
    assert fake.calls == 3


async def test_schema_breaking_replies_are_retried(store: Store, fake: FakeGemini, gemini) -> None:
    good = {
        "title_translated": "T", "summary": "S.", "key_takeaways": ["a", "b", "c"], "keywords": ["k"],
        "background": "B.", "prior_work": "P.", "method": ["m"], "results": "R.", "conclusion": "C.",
        "affiliations": [], "code_url": None,
    }
    fake.script(
        FakeGemini.text('{"summary": "cut off by the token lim', finish_reason="MAX_TOKENS"),
        FakeGemini.content({k: v for k, v in good.items() if k != "results"}),
        FakeGemini.content({**good, "key_takeaways": ["only one"]}),
    )
    summary = await SummaryService(store, gemini(attempts=4)).summarize(PAPER, "en")
    assert fake.calls == 4
    assert summary.content.summary.startswith("[English]")

    # Light repair instead of a retry: too many takeaways are trimmed, bullets and a non-URL dropped.
    fake.script(
        FakeGemini.content(
            {**good, "key_takeaways": [f"- point {i}" for i in range(12)], "method": "1. load\n2. train",
             "code_url": "not available"}
        )
    )
    content = await gemini().summarize(PAPER, "en", None)
    assert fake.calls == 5
    assert content.key_takeaways == [f"point {i}" for i in range(8)]
    assert content.method == ["load", "train"] and content.code_url is None

    fake.default = FakeGemini.text("Sorry, I cannot help with that.")
    with pytest.raises(SummarizerError, match="not JSON"):
        await gemini(attempts=2).summarize(PAPER, "en", None)


async def test_prompt_carries_language_paper_and_full_text(store: Store, fake: FakeGemini, gemini) -> None:
    async def first_pages(paper: Paper) -> str | None:
        return "FIRST-PAGES-MARKER Singapore University of Technology and Design. 1 Introduction ..."

    summary = await SummaryService(store, gemini(), text_source=first_pages).summarize(PAPER, "zh")
    prompt = fake.prompts[-1]
    assert "Target language: Chinese (Simplified)" in prompt
    assert PAPER.title in prompt and PAPER.abstract in prompt and PAPER.authors[0] in prompt
    assert PAPER.comment and PAPER.comment in prompt
    assert "FIRST-PAGES-MARKER" in prompt
    assert summary.full_text_used is True
    stored = await store.get_summary(PAPER, "zh", f"gemini:{MODEL}", summary.prompt_version)
    assert stored is not None and stored.full_text_used is True

    # What went over the wire: the model's path, the key header, a JSON schema of SummaryContent.
    assert fake.paths[-1].endswith(f"/models/{MODEL}:generateContent")
    assert fake.keys[-1] == KEY
    config = fake.bodies[-1]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert set(config["responseSchema"]["properties"]) >= {"summary", "key_takeaways", "method", "code_url"}

    async def no_text(paper: Paper) -> str | None:
        return None

    plain = await SummaryService(store, gemini(), text_source=no_text).summarize(PAPER, "Swahili")
    assert "Target language: Swahili" in fake.prompts[-1] and "<<<" not in fake.prompts[-1]
    assert plain.full_text_used is False and plain.language == "Swahili"


async def test_broken_text_source_does_not_block_the_summary(store: Store, fake: FakeGemini, gemini) -> None:
    async def broken(paper: Paper) -> str | None:
        raise OSError("PDF download failed")

    summary = await SummaryService(store, gemini(), text_source=broken).summarize(PAPER, "en")
    assert summary.generated_by == f"gemini:{MODEL}" and summary.full_text_used is False


async def test_api_key_never_in_logs_or_errors(store: Store, fake: FakeGemini, gemini, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    # A server that echoes the key back in its error message, then a rejected key.
    fake.script(*[FakeGemini.error(500, f"backend failed for key {KEY}")] * 2)
    with pytest.raises(SummarizerError) as failed:
        await gemini(attempts=2).summarize(PAPER, "en", None)
    fake.expected_key = "the-right-key"
    with pytest.raises(SummarizerError) as rejected:
        await gemini().summarize(PAPER, "en", None)
    fallback = await SummaryService(store, gemini(attempts=1), fallback=ExtractiveSummarizer()).summarize(PAPER, "en")

    assert fallback.generated_by == "extractive"
    assert fake.keys == [KEY] * 4  # the key did go to the server, in its header
    assert "backend failed for key ***" in str(failed.value)
    assert "API key not valid" in str(rejected.value)
    for text in (str(failed.value), repr(failed.value), str(rejected.value), repr(rejected.value), caplog.text):
        assert KEY not in text
    assert any("retrying" in r.getMessage() for r in caplog.records)


# --- the extractive summarizer -----------------------------------------------------------


@pytest.mark.parametrize("paper", TESTING, ids=lambda p: p.arxiv_id)
async def test_extractive_on_recorded_abstracts(paper: Paper) -> None:
    c = await ExtractiveSummarizer().summarize(paper, "zh", None)
    abstract_sentences = split_sentences(paper.abstract)
    assert 3 <= len(c.key_takeaways) <= 8
    assert all(t in abstract_sentences for t in c.key_takeaways)
    assert c.summary in abstract_sentences and len(split_sentences(c.summary)) == 1
    assert c.title_translated == paper.title
    for section in (c.background, c.prior_work, c.results, c.conclusion):
        assert section.strip()
    assert c.method and all(step.strip() for step in c.method)
    assert len(c.keywords) >= 3 and len(set(c.keywords)) == len(c.keywords)
    assert c.code_url is None


async def test_extractive_sections_follow_the_abstract() -> None:
    c = await ExtractiveSummarizer().summarize(PAPER, "en", None)
    assert c.summary.startswith("In this work, we propose active fuzzing")
    assert c.background.startswith("Cyber-physical systems (CPSs) in critical infrastructure")
    assert "intelligent fuzzing approaches require impractical amounts" in c.prior_work
    assert c.method[0] == c.summary
    assert "water purification plant testbed" in c.results
    assert c.conclusion.startswith("Finally, we demonstrate that our prediction models")
    assert "active fuzzing" in c.keywords and "cyber-physical systems" in c.keywords


async def test_extractive_finds_code_url_and_keeps_it_out_of_the_text() -> None:
    c = await ExtractiveSummarizer().summarize(LOCINV, "en", None)
    assert c.code_url == "https://github.com/wangkai930418/DPL"
    assert c.summary.startswith("To address this problem, we propose Localization-aware Inversion (LocInv)")
    assert c.keywords[0] == "LocInv"
    assert c.prior_work.startswith("However, existing image editing techniques")
    everything = " ".join([c.summary, *c.key_takeaways, c.background, c.prior_work, *c.method, c.results, c.conclusion])
    assert "github" not in everything and "The code will be released" not in everything
    assert any(t.endswith("quantitatively and qualitatively.") for t in c.key_takeaways)

    in_comment = dataclasses.replace(PAPER, comment="12 pages. Code: gitlab.com/cps-lab/active-fuzzing.")
    assert (await ExtractiveSummarizer().summarize(in_comment, "en", None)).code_url == (
        "https://gitlab.com/cps-lab/active-fuzzing"
    )


async def test_extractive_uses_full_text_for_missing_sections() -> None:
    short = dataclasses.replace(PAPER, abstract="We propose a fuzzing method for water treatment plants.")
    bare = await ExtractiveSummarizer().summarize(short, "en", None)
    assert 3 <= len(bare.key_takeaways) <= 8
    assert bare.prior_work == NO_PRIOR_WORK and bare.results == NO_RESULTS

    text = (
        "Active Fuzzing for Testing\nJohn Doe john@example.org\n"
        "Previous fuzzers for industrial control systems fail to find attacks within a practical time budget.\n"
        "Our experiments show that the new fuzzer finds 12 attacks in under an hour on the testbed.\n"
        "References\n[1] Some cited paper that must not be used in the summary at all."
    )
    rich = await ExtractiveSummarizer().summarize(short, "en", text)
    assert rich.prior_work.startswith("Previous fuzzers for industrial control systems fail")
    assert "finds 12 attacks" in rich.results
    assert not any("cited paper" in t or "@" in t for t in rich.key_takeaways)


async def test_extractive_primary_is_stored_as_english_once(store: Store) -> None:
    service = SummaryService(store, ExtractiveSummarizer())
    zh = await service.summarize(PAPER, "zh")
    de = await service.summarize(PAPER, "German")
    assert zh.generated_by == de.generated_by == "extractive"
    assert zh.language == de.language == "en"
    assert (await service.cached(PAPER, "ja")) is not None
    assert await store.count_summaries() == 1


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("As shown by Smith et al. in Fig. 2, the error drops to 3.5 percent. It works.",
         ["As shown by Smith et al. in Fig. 2, the error drops to 3.5 percent.", "It works."]),
        ("We use e.g. Eq. 3 and i.e. Sec. 4.2 here. Then J. R. Smith agreed! Really?",
         ["We use e.g. Eq. 3 and i.e. Sec. 4.2 here.", "Then J. R. Smith agreed!", "Really?"]),
        ("The limit of finite N. The gap closes. Methods such as A, B, etc. We then test.",
         ["The limit of finite N.", "The gap closes.", "Methods such as A, B, etc.", "We then test."]),
        ("Results improve qualitatively.The code is online. Jones et al. (2020) disagree.",
         ["Results improve qualitatively.", "The code is online.", "Jones et al. (2020) disagree."]),
        ("See www.example.org/a.B for data. 方法有效。结果很好！",
         ["See www.example.org/a.B for data.", "方法有效。", "结果很好！"]),
    ],
)
def test_split_sentences(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


# --- languages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("en", "en"), ("English", "en"), ("english", "en"), (" EN ", "en"), ("en-US", "en"),
        ("zh", "zh"), ("Chinese", "zh"), ("chinese", "zh"), ("中文", "zh"), ("zh-CN", "zh"), ("zh_cn", "zh"),
        ("Chinese (Simplified)", "zh"), ("zh-TW", "zh-tw"),
        ("de", "de"), ("German", "de"), ("Deutsch", "de"), ("fr", "fr"), ("French", "fr"), ("es", "es"),
        ("Spanish", "es"), ("ja", "ja"), ("Japanese", "ja"), ("日本語", "ja"), ("ko", "ko"), ("Korean", "ko"),
        ("ru", "ru"), ("Russian", "ru"), ("pt", "pt"), ("pt-BR", "pt"), ("Portuguese", "pt"), ("it", "it"),
        ("Italian", "it"),
        ("swahili", "Swahili"), ("Old  Norse", "Old Norse"), ("serbo-croatian", "Serbo-Croatian"),
    ],
)
def test_normalize_language(typed: str, code: str) -> None:
    assert normalize_language(typed) == code
    assert normalize_language(code) == code  # stored values normalize to themselves


@pytest.mark.parametrize(
    ("typed", "hint"),
    [("", "No language given"), ("xx", "not a language code I know"), ("klingon2", "not a language"),
     ("a" * 41, "at most 40 characters"), ("en; DROP TABLE", "letters, spaces and hyphens")],
)
def test_normalize_language_rejects(typed: str, hint: str) -> None:
    with pytest.raises(ValueError, match=hint):
        normalize_language(typed)


def test_language_name() -> None:
    assert language_name("zh") == "Chinese (Simplified)"
    assert language_name("en") == "English"
    assert language_name("ja") == "Japanese"
    assert language_name("Swahili") == "Swahili"



async def test_stored_finds_the_fallback_summary_a_post_showed(store: Store, fake: FakeGemini, gemini) -> None:
    """A failed LLM call leaves the extractive stand-in (stored as English); the breakdown finds it."""
    fake.default = FakeGemini.error(500)
    service = SummaryService(store, gemini(attempts=1), fallback=ExtractiveSummarizer())
    shown = await service.summarize(PAPER, "zh")
    assert shown.generated_by == "extractive"
    assert await service.cached(PAPER, "zh") is None
    again = await service.stored(PAPER, "zh")
    assert again is not None and again.content == shown.content


async def test_a_200_that_is_not_an_api_reply_is_retried_then_falls_back(
    store: Store, fake: FakeGemini, gemini
) -> None:
    """A proxy's HTML page or JSON of another shape: retried, then the labelled extractive result."""
    from tests.fakes.gemini import Reply

    fake.script(Reply(raw_body="<html>captive portal</html>"), Reply(raw_body='{"candidates": "nope"}'))
    service = SummaryService(store, gemini(attempts=3), fallback=ExtractiveSummarizer())
    ok = await service.summarize(PAPER, "en")
    assert ok.generated_by == f"gemini:{MODEL}" and fake.calls == 3

    fake.default = Reply(raw_body="<html>still not</html>")
    other = dataclasses.replace(PAPER, arxiv_id="2005.99999")
    fallen = await service.summarize(other, "en")
    assert fallen.generated_by == "extractive"


async def test_a_gemini_reply_cut_off_at_the_output_limit_says_so(fake: FakeGemini, gemini) -> None:
    fake.script(*[FakeGemini.text('{"summary": "cut off by the tok', finish_reason="MAX_TOKENS")] * 2)
    with pytest.raises(SummarizerError, match="cut off at the model's output limit"):
        await gemini(attempts=2).summarize(PAPER, "en", None)
