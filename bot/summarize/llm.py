"""The one policy every LLM backend runs under: the prompt, the reply's schema, parsing, repair and retries.

A backend (`ChatModel`: Gemini, an OpenAI-compatible server) makes one attempt of one JSON
completion; everything that decides whether a reply is usable, and how long to wait before
the next attempt, lives here once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from string import Template
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity import wait_exponential, wait_random

from bot.grounding import PAGE_BREAK
from bot.models import Evidence, Paper, SummaryContent
from bot.summarize.base import ChatModel, Completion, SummarizerError, TransientLLMError, Usage
from bot.summarize.languages import language_name

log = logging.getLogger(__name__)

T = TypeVar("T")

# Told of every completion a backend returned: (model_key such as "openai:gpt-4o-mini", its tokens).
UsageHook = Callable[[str, Usage], Awaitable[None]]

MAX_TEXT_CHARS = 60_000  # the first pages of a paper; more only costs tokens
MAX_TAKEAWAYS = 8
MIN_TAKEAWAYS = 3
MAX_RETRY_AFTER = 60.0  # seconds: a server asking for a longer wait is treated as down


class SummarySchema(BaseModel):
    """The reply Gemini must give; the descriptions are part of what guides it."""

    title_translated: str = Field(description="The paper's title in the target language.")
    summary: str = Field(description="Exactly one sentence: the problem and the paper's contribution.")
    key_takeaways: list[str] = Field(
        description="3 to 8 short, self-contained key points, the most important first."
    )
    evidence: list[str] = Field(
        description="For each key takeaway, in the same order, one passage of 1 to 3 sentences copied word for "
        "word from the paper's text above (title, abstract or PDF text) that supports it; in the paper's own "
        "language, never translated or paraphrased."
    )
    keywords: list[str] = Field(description="3 to 6 keywords or key phrases.")
    background: str = Field(description="The research area and the problem the paper addresses.")
    prior_work: str = Field(description="What prior work did and its problems that motivate this paper.")
    method: list[str] = Field(description="The proposed method as ordered steps, one step per item.")
    results: str = Field(description="The main results, with the data or benchmarks they come from.")
    conclusion: str = Field(description="What the paper concludes, and its significance or limits.")
    affiliations: list[str] = Field(
        description="The authors' institutions as printed on the paper's first page; empty if not shown."
    )
    code_url: str | None = Field(
        description="URL of the paper's own code repository if the paper or its comment gives one, else null."
    )


_TEMPLATE = resources.files("bot.summarize").joinpath("prompts/summary.txt").read_text("utf-8")
# Derived, not hand-bumped: any edit of the prompt or the schema starts a fresh cache.
PROMPT_VERSION = "g" + hashlib.sha256(
    (_TEMPLATE + json.dumps(SummarySchema.model_json_schema(), sort_keys=True)).encode()
).hexdigest()[:10]


def build_prompt(paper: Paper, language: str, full_text: str | None) -> str:
    paper_text = ""
    if full_text and full_text.strip():
        paper_text = (
            "\nText of the paper's first pages (extracted from the PDF; line breaks and symbols may be garbled):\n"
            f"<<<\n{full_text.strip()[:MAX_TEXT_CHARS].replace(PAGE_BREAK, chr(10))}\n>>>\n"
        )
    return Template(_TEMPLATE).substitute(
        language=language_name(language),
        title=" ".join(paper.title.split()),
        authors=", ".join(paper.authors),
        categories=", ".join(paper.categories),
        comment=paper.comment or "(none)",
        abstract=" ".join(paper.abstract.split()),
        paper_text=paper_text,
    )


def reply_object(text: str | None) -> dict[str, Any]:
    """The reply's JSON object (a ```json fence forgiven), or TransientLLMError saying what was wrong."""
    if not text or not text.strip():
        raise TransientLLMError("an empty reply")
    try:
        data = json.loads(_FENCE.sub("", text))
    except json.JSONDecodeError:
        raise TransientLLMError("a reply that is not JSON") from None
    if not isinstance(data, dict):
        raise TransientLLMError("a JSON reply that is not an object")
    return data


_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")
_BULLET = re.compile(r"^\s*(?:[-*•]|\(?\d+[.)])\s*")


def _repair(data: dict[str, Any]) -> dict[str, Any]:
    """Forgive what is harmless: a list sent as one string, stray bullets, too many takeaways."""
    out = dict(data)
    takeaways, quotes = out.get("key_takeaways"), out.get("evidence")
    if isinstance(takeaways, list) and isinstance(quotes, list):
        # Quotes align with takeaways: a takeaway dropped below (blank, repeated) takes its quote along.
        kept: dict[str, Any] = {}
        for i, t in enumerate(takeaways):
            text = _BULLET.sub("", t).strip() if isinstance(t, str) else ""
            if text and text not in kept:
                kept[text] = quotes[i] if i < len(quotes) else None
        out["key_takeaways"], out["evidence"] = list(kept), list(kept.values())
    for key in ("key_takeaways", "keywords", "method", "affiliations"):
        value = out.get(key)
        if isinstance(value, str):
            value = value.splitlines()
        if isinstance(value, list):
            items = [_BULLET.sub("", v).strip() for v in value if isinstance(v, str)]
            out[key] = list(dict.fromkeys(i for i in items if i))
    for key in ("title_translated", "summary", "background", "prior_work", "results", "conclusion"):
        value = out.get(key)
        if isinstance(value, list):
            value = " ".join(str(v) for v in value)
        if isinstance(value, str):
            out[key] = value.strip()
    if isinstance(out.get("key_takeaways"), list):
        out["key_takeaways"] = out["key_takeaways"][:MAX_TAKEAWAYS]
    # Quotes keep their order (they align with the takeaways) and are never deduplicated; a reply
    # without them is usable, its takeaways just stay unverified.
    quotes = out.get("evidence")
    if isinstance(quotes, str):
        quotes = [quotes]
    out["evidence"] = [_quote(q) for q in quotes] if isinstance(quotes, list) else []
    url = out.get("code_url")
    out["code_url"] = url.strip() if isinstance(url, str) and url.strip().startswith(("http://", "https://")) else None
    return out


def _quote(value: Any) -> str:
    """A proposed quote without the quotation marks and bullets a model may wrap it in."""
    if not isinstance(value, str):
        return ""
    return _BULLET.sub("", value).strip().strip("\"“”„'‘’«»").strip()


def parse_reply(text: str | None) -> SummaryContent:
    """The reply's JSON as SummaryContent, or TransientLLMError saying what was wrong with it."""
    data = reply_object(text)
    try:
        reply = SummarySchema.model_validate(_repair(data))
    except ValidationError as exc:
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors()[:3])
        raise TransientLLMError(f"a reply that does not fit the schema (at {where})") from None
    if not MIN_TAKEAWAYS <= len(reply.key_takeaways) <= MAX_TAKEAWAYS:
        raise TransientLLMError(f"{len(reply.key_takeaways)} key takeaways instead of 3 to 8")
    empty = [k for k in ("summary", "background", "results", "conclusion") if not getattr(reply, k)]
    if empty or not reply.method:
        raise TransientLLMError(f"a reply with empty fields ({', '.join(empty or ['method'])})")
    fields = reply.model_dump()
    quotes = fields.pop("evidence")[: len(reply.key_takeaways)]
    # Unchecked until bot.grounding.ground sees the paper's text (SummaryService does that).
    fields["evidence"] = [Evidence(q or None, False) for q in quotes]
    return SummaryContent(**fields)


class LlmSummarizer:
    """Summaries (and any other JSON reply) from one `ChatModel`, under the project's retry policy.

    Each attempt that raises TransientLLMError (rate limit, 5xx, timeout, a reply that breaks its
    schema) is retried with exponential backoff, waiting at least what the server asked for
    (capped at MAX_RETRY_AFTER); after `attempts` the call raises SummarizerError.

    `on_usage`, when given, is awaited once per completion the backend returned, replies later
    rejected by `parse` included (they cost tokens too); failed requests report nothing. Its
    own failures are logged, never raised: bookkeeping must not cost a summary.
    """

    prompt_version = PROMPT_VERSION

    def __init__(
        self,
        model: ChatModel,
        *,
        attempts: int = 4,
        backoff_base: float = 2.0,
        on_usage: UsageHook | None = None,
    ) -> None:
        self.model = model
        self.model_key = model.model_key
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.on_usage = on_usage

    async def summarize(self, paper: Paper, language: str, full_text: str | None) -> SummaryContent:
        prompt = build_prompt(paper, language, full_text)
        return await self.generate(prompt, SummarySchema, parse_reply, what=f"summary of {paper.versioned_id}")

    async def generate(
        self, prompt: str, schema: type[BaseModel], parse: Callable[[str], T], *, what: str
    ) -> T:
        """`parse` applied to a reply that fits `schema`; SummarizerError when no attempt gave one.

        `parse` raises TransientLLMError for a reply that is unusable (retried like a 503).
        """

        async def once() -> T:
            completion: Completion = await self.model.complete(prompt, schema)
            await self._report_usage(completion.usage)
            try:
                return parse(completion.text)
            except TransientLLMError:
                if completion.cut_off:  # the cause, rather than the broken JSON it left
                    raise TransientLLMError(
                        "a reply cut off at the model's output limit (raise the server's max output tokens)"
                    ) from None
                raise

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientLLMError),
            before_sleep=lambda state: self._log_retry(what, state),
            reraise=True,
        )
        try:
            return await retrying(once)
        except TransientLLMError as exc:
            raise SummarizerError(
                f"{self.model.vendor} gave no usable {what} in {self.attempts} attempts; last: {exc}"
            ) from None

    async def _report_usage(self, usage: Usage) -> None:
        if self.on_usage is None:
            return
        try:
            await self.on_usage(self.model_key, usage)
        except Exception as exc:
            log.warning("could not record the token usage of %s: %s", self.model_key, exc)

    def _wait(self, state: RetryCallState) -> float:
        backoff = (wait_exponential(multiplier=self.backoff_base, max=60) + wait_random(0, self.backoff_base))(state)
        exc = state.outcome.exception() if state.outcome else None
        asked = getattr(exc, "retry_after", None)
        return max(backoff, min(asked, MAX_RETRY_AFTER)) if asked else backoff

    def _log_retry(self, what: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s attempt %d/%d for %s failed (%s); retrying in %.1f s",
            self.model.vendor, state.attempt_number, self.attempts, what, exc, wait,
        )

    async def aclose(self) -> None:
        await self.model.aclose()
