"""Summaries from Gemini through google-genai, as JSON that must fit SummaryContent."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import re
from importlib import resources
from string import Template
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import BaseModel, Field, SecretStr, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity import wait_exponential, wait_random

from bot.models import Paper, SummaryContent
from bot.summarize.base import SummarizerError
from bot.summarize.languages import language_name

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 60_000  # the first pages of a paper; more only costs tokens
MAX_TAKEAWAYS = 8
MIN_TAKEAWAYS = 3
_RETRY_STATUS = frozenset({408, 429})


class SummarySchema(BaseModel):
    """The reply Gemini must give; the descriptions are part of what guides it."""

    title_translated: str = Field(description="The paper's title in the target language.")
    summary: str = Field(description="Exactly one sentence: the problem and the paper's contribution.")
    key_takeaways: list[str] = Field(
        description="3 to 8 short, self-contained key points, the most important first."
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
            f"<<<\n{full_text.strip()[:MAX_TEXT_CHARS]}\n>>>\n"
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


class _Retry(Exception):
    """A failure another attempt may cure: rate limit, server error, timeout, malformed reply."""


def _transport_errors() -> tuple[type[BaseException], ...]:
    # google-genai talks through aiohttp when it is installed, else through httpx2.
    found: list[type[BaseException]] = [TimeoutError, ConnectionError]
    for module, name in (("aiohttp", "ClientError"), ("httpx", "TransportError"), ("httpx2", "TransportError")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


_TRANSPORT_ERRORS = _transport_errors()
_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$")
_BULLET = re.compile(r"^\s*(?:[-*•]|\(?\d+[.)])\s*")


def _repair(data: dict[str, Any]) -> dict[str, Any]:
    """Forgive what is harmless: a list sent as one string, stray bullets, too many takeaways."""
    out = dict(data)
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
    url = out.get("code_url")
    out["code_url"] = url.strip() if isinstance(url, str) and url.strip().startswith(("http://", "https://")) else None
    return out


def parse_reply(text: str | None) -> SummaryContent:
    """The reply's JSON as SummaryContent, or _Retry saying what was wrong with it."""
    if not text or not text.strip():
        raise _Retry("an empty reply")
    try:
        data = json.loads(_FENCE.sub("", text))
    except json.JSONDecodeError:
        raise _Retry("a reply that is not JSON") from None
    if not isinstance(data, dict):
        raise _Retry("a JSON reply that is not an object")
    try:
        reply = SummarySchema.model_validate(_repair(data))
    except ValidationError as exc:
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors()[:3])
        raise _Retry(f"a reply that does not fit the schema (at {where})") from None
    if not MIN_TAKEAWAYS <= len(reply.key_takeaways) <= MAX_TAKEAWAYS:
        raise _Retry(f"{len(reply.key_takeaways)} key takeaways instead of 3 to 8")
    empty = [k for k in ("summary", "background", "results", "conclusion") if not getattr(reply, k)]
    if empty or not reply.method:
        raise _Retry(f"a reply with empty fields ({', '.join(empty or ['method'])})")
    return SummaryContent(**reply.model_dump())


class GeminiSummarizer:
    prompt_version = PROMPT_VERSION

    def __init__(
        self,
        api_key: SecretStr,
        model: str,
        *,
        base_url: str | None = None,
        timeout: float = 90.0,
        attempts: int = 4,
        backoff_base: float = 2.0,
    ) -> None:
        self.model = model
        self.model_key = f"gemini:{model}"
        self.attempts = attempts
        self.backoff_base = backoff_base
        self._secret = api_key.get_secret_value()
        self._client = genai.Client(
            api_key=self._secret,
            http_options=types.HttpOptions(
                base_url=base_url,
                timeout=int(timeout * 1000),
                # One attempt per call inside the SDK: the retry policy lives here, in one place.
                retry_options=types.HttpRetryOptions(attempts=1),
            ),
        )
        self._config = types.GenerateContentConfig(
            response_mime_type="application/json",
            response_schema=SummarySchema,
            temperature=0.3,
        )

    async def summarize(self, paper: Paper, language: str, full_text: str | None) -> SummaryContent:
        prompt = build_prompt(paper, language, full_text)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_base, max=60) + wait_random(0, self.backoff_base),
            retry=retry_if_exception_type(_Retry),
            before_sleep=lambda state: self._log_retry(paper, state),
            reraise=True,
        )
        try:
            return await retrying(self._once, prompt)
        except _Retry as exc:
            raise SummarizerError(
                f"Gemini gave no usable summary of {paper.versioned_id} in {self.attempts} attempts; "
                f"last: {self._redact(str(exc))}"
            ) from None

    async def _once(self, prompt: str) -> SummaryContent:
        try:
            response = await self._client.aio.models.generate_content(
                model=self.model, contents=prompt, config=self._config
            )
        except genai_errors.APIError as exc:
            detail = self._redact(f"HTTP {exc.code} {exc.status or ''} {exc.message or ''}".strip())
            if exc.code in _RETRY_STATUS or exc.code >= 500:
                raise _Retry(detail) from None
            raise SummarizerError(f"Gemini refused the request: {detail}") from None
        except genai_errors.UnknownApiResponseError:
            raise _Retry("a response body that is not JSON") from None
        except _TRANSPORT_ERRORS as exc:
            raise _Retry(f"no answer ({type(exc).__name__})") from None
        except ValueError as exc:  # a 200 whose body is not JSON, or JSON of the wrong shape
            raise _Retry(f"an unreadable reply ({type(exc).__name__})") from None
        return parse_reply(response.text)

    def _log_retry(self, paper: Paper, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "Gemini attempt %d/%d for %s failed (%s); retrying in %.1f s",
            state.attempt_number, self.attempts, paper.versioned_id, self._redact(str(exc)), wait,
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    async def aclose(self) -> None:
        await self._client.aio.aclose()
