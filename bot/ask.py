"""Ask a paper: a question answered from the paper's own text, quoting the passages it rests on.

The paper's text (title, abstract and the text extracted from its PDF, the same text summaries
are made and grounded from) is split into passages of a few sentences; BM25 (rank-bm25) picks the
ones most relevant to the question, and one LLM call (`LlmSummarizer.generate`, the retry and
parse policy of every backend) answers from them in the chat's language with 1 to 3 verbatim
quotes, which are verified like a summary's evidence (bot.grounding). Without an LLM (the
extractive backend, or the LLM failing), the answer is the top passages themselves, labelled so.
Answers are cached per (paper, normalised question, language, model, prompt version).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from string import Template
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from rank_bm25 import BM25Okapi

from bot.grounding import PAGE_BREAK, PaperText, verify_quotes
from bot.models import Evidence, Paper, evidence_from_json
from bot.store import Store
from bot.summarize.base import Summarizer, SummarizerError, TransientLLMError
from bot.summarize.breaker import CircuitBreaker
from bot.summarize.extractive import content_words, split_sentences
from bot.summarize.languages import language_name
from bot.summarize.llm import LlmSummarizer, reply_object

log = logging.getLogger(__name__)

TOP_PASSAGES = 6  # passages given to the LLM
UNMATCHED_CHARS = 24_000  # the text given when no passage matches: PdfService.first_pages_text's budget
MAX_QUOTES = 3
PASSAGE_SENTENCES = 3
PASSAGE_CHARS = 900
EXTRACTIVE = "extractive"


class AnswerSchema(BaseModel):
    """The reply the LLM must give to a question; the descriptions are part of what guides it."""

    answer: str = Field(description="The answer to the question, in the target language, from the passages only.")
    quotes: list[str] = Field(
        description="1 to 3 passages the answer rests on, copied word for word from the passages given, "
        "in the paper's own language."
    )


_TEMPLATE = resources.files("bot.summarize").joinpath("prompts/ask.txt").read_text("utf-8")
ASK_PROMPT_VERSION = "a" + hashlib.sha256(
    (_TEMPLATE + json.dumps(AnswerSchema.model_json_schema(), sort_keys=True)).encode()
).hexdigest()[:10]


@dataclass(frozen=True, slots=True)
class Passage:
    text: str
    page: int | None  # PDF page; None for the title and abstract


@dataclass(slots=True)
class Answer:
    """An answer to a question about a paper, as the chat renderers show it."""

    paper: Paper
    question: str
    language: str
    text: str  # the answer; for an extractive answer, empty (the quotes are the answer)
    quotes: list[Evidence]
    generated_by: str  # the model key ("gemini:<model>") or "extractive"
    full_text: bool  # False: only the title and abstract were there to answer from
    cached: bool = False
    passages: list[Passage] = field(default_factory=list)  # what the answer was drawn from

    @property
    def from_llm(self) -> bool:
        return self.generated_by != EXTRACTIVE

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "quotes": [q.to_json() for q in self.quotes],
            "generated_by": self.generated_by,
            "full_text": self.full_text,
        }


def clean_question(question: str) -> str:
    """The question as asked, without invisible format characters (zero-width spaces and joiners,
    BOMs, direction marks: Unicode category Cf, which str.split() keeps) and with single spaces;
    empty when nothing visible was asked."""
    return " ".join("".join(ch for ch in question if unicodedata.category(ch) != "Cf").split())


# Apostrophes and quotation marks as keyboards and phones type them, one of each for the key.
_QUOTE_MARKS = dict.fromkeys(map(ord, "‘’‚‛′`´"), "'") | dict.fromkeys(map(ord, "“”„‟″«»"), '"')


def normalize_question(question: str) -> str:
    """The cache's key for a question: case, spacing, invisible characters, full-width forms
    (NFKC), curly vs straight quotes and the final punctuation do not matter."""
    text = unicodedata.normalize("NFKC", clean_question(question)).translate(_QUOTE_MARKS)
    return " ".join(text.casefold().split()).rstrip(" ?？!！.。")


_WORDS = re.compile(r"\w+")


def _tokens(text: str) -> list[str]:
    # Content words where there are some; any word otherwise (a question such as "what is it about?").
    words = content_words(text)
    return words or [w.lower() for w in _WORDS.findall(text)]


def passages_of(paper: Paper, full_text: str | None) -> list[Passage]:
    """The paper's text as passages of up to PASSAGE_SENTENCES sentences (and PASSAGE_CHARS), each
    within one page, so its page is known."""
    pages: list[tuple[int | None, str]] = [(None, f"{paper.title}. {paper.abstract}")]
    if full_text and full_text.strip():
        pages += [(n, t) for n, t in enumerate(full_text.split(PAGE_BREAK), 1) if t.strip()]
    out: list[Passage] = []
    for page, text in pages:
        current: list[str] = []
        for sentence in split_sentences(text):
            if current and (len(current) >= PASSAGE_SENTENCES or len(" ".join(current)) + len(sentence) > PASSAGE_CHARS):
                out.append(Passage(" ".join(current), page))
                current = []
            current.append(sentence[:PASSAGE_CHARS])
        if current:
            out.append(Passage(" ".join(current), page))
    return out


def top_passages(
    passages: list[Passage], question: str, k: int = TOP_PASSAGES, *, unmatched_chars: int = 0
) -> list[Passage]:
    """The `k` passages BM25 ranks highest for the question, in the paper's order.

    When no word of the question is in the paper (a question in Chinese about a paper in English,
    or "what is it about?"), ranking says nothing: the first passages from the title and abstract
    on, `k` of them, or as many as fit in `unmatched_chars` characters when that is more.
    """
    if not passages:
        return []
    bm25 = BM25Okapi([_tokens(p.text) or ["-"] for p in passages])
    scores = bm25.get_scores(_tokens(question))
    ranked = sorted(range(len(passages)), key=lambda i: -scores[i])
    chosen = [i for i in ranked[:k] if scores[i] > 0]
    if chosen:
        return [passages[i] for i in sorted(chosen)]
    out, size = [], 0
    for n, p in enumerate(passages):
        if n >= k and size + len(p.text) > unmatched_chars:
            break
        out.append(p)
        size += len(p.text)
    return out


def build_ask_prompt(paper: Paper, question: str, language: str, passages: list[Passage]) -> str:
    lines = []
    for n, p in enumerate(passages, 1):
        where = f" (p. {p.page})" if p.page else ""
        lines.append(f"[{n}]{where} {' '.join(p.text.split())}")
    return Template(_TEMPLATE).substitute(
        language=language_name(language),
        title=" ".join(paper.title.split()),
        question=" ".join(question.split()),
        passages="\n".join(lines),
    )


def parse_answer(text: str | None) -> tuple[str, list[str]]:
    """The reply's answer and quotes, or TransientLLMError saying what was wrong with it."""
    data = reply_object(text)
    if isinstance(data.get("quotes"), str):
        data["quotes"] = [data["quotes"]]
    try:
        reply = AnswerSchema.model_validate(data)
    except ValidationError as exc:
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors()[:3])
        raise TransientLLMError(f"an answer that does not fit the schema (at {where})") from None
    answer = reply.answer.strip()
    if not answer:
        raise TransientLLMError("an empty answer")
    quotes = [q.strip().strip("\"“”„'‘’«»").strip() for q in reply.quotes]
    quotes = [re.sub(r"^\[\d+\]\s*(?:\(p\. \d+\)\s*)?", "", q) for q in quotes]
    return answer, [q for q in quotes if q][:MAX_QUOTES]


class Asker:
    """Answers questions about papers; `summarizer` is the primary summarizer (an LLM or not)."""

    def __init__(
        self,
        store: Store,
        summarizer: Summarizer,
        text_source: Callable[[Paper], Awaitable[str | None]] | None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.store = store
        self.llm = summarizer if isinstance(summarizer, LlmSummarizer) else None
        self.text_source = text_source
        # The summaries' breaker: while the LLM is failing, a question is answered with passages at
        # once instead of waiting through every retry; its answers count towards closing it again.
        self.breaker = breaker

    @property
    def model_key(self) -> str:
        return self.llm.model_key if self.llm else EXTRACTIVE

    async def cached(self, paper: Paper, question: str, language: str) -> Answer | None:
        stored = await self.store.get_answer(
            paper.arxiv_id, paper.version, normalize_question(question), language, self.model_key, ASK_PROMPT_VERSION
        )
        if stored is None:
            return None
        return Answer(
            paper, question, language, stored["text"], evidence_from_json(stored["quotes"]) or [],
            stored["generated_by"], bool(stored["full_text"]), cached=True,
        )

    async def ask(self, paper: Paper, question: str, language: str) -> Answer:
        """A new answer (no cache lookup; see `cached`), stored for the next asker.

        An LLM failure gives the extractive answer, which is stored under its own key.
        """
        full_text = await self._full_text(paper)
        # A question in another language than the paper's matches no passage: the LLM, which reads
        # both, then gets the paper's text itself (as much as a summary reads) instead of its start.
        passages = top_passages(passages_of(paper, full_text), question, unmatched_chars=UNMATCHED_CHARS)
        text = PaperText.of(paper, full_text)
        answer: Answer | None = None
        if self.llm is not None and (self.breaker is None or self.breaker.allow()):
            prompt = build_ask_prompt(paper, question, language, passages)
            try:
                reply, quotes = await self.llm.generate(
                    prompt, AnswerSchema, parse_answer, what=f"answer about {paper.versioned_id}"
                )
            except SummarizerError as exc:
                if self.breaker is not None:
                    self.breaker.failure()
                log.warning("answer about %s by %s failed, answering with passages: %s",
                            paper.versioned_id, self.llm.model_key, exc)
            except BaseException:
                if self.breaker is not None:
                    self.breaker.abandon()
                raise
            else:
                if self.breaker is not None:
                    self.breaker.success()
                answer = Answer(paper, question, language, reply, verify_quotes(quotes, text),
                                self.llm.model_key, bool(full_text), passages=passages)
        if answer is None:
            best = top_passages(passages, question, MAX_QUOTES)
            quotes = [Evidence(p.text, True, p.page) for p in best]
            answer = Answer(paper, question, language, "", quotes, EXTRACTIVE, bool(full_text), passages=passages)
        await self.store.put_answer(
            paper.arxiv_id, paper.version, normalize_question(question), language, answer.generated_by,
            ASK_PROMPT_VERSION, answer.to_json(),
        )
        return answer

    async def _full_text(self, paper: Paper) -> str | None:
        if self.text_source is None:
            return None
        try:
            text = await self.text_source(paper)
        except Exception as exc:  # noqa: BLE001 - the abstract still answers something
            log.warning("no text of %s for a question: %s", paper.versioned_id, exc)
            return None
        return text if text and text.strip() else None
