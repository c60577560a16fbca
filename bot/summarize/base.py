"""What every summarizer offers the service, and what every LLM backend offers a summarizer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

from bot.models import Paper, SummaryContent


class SummarizerError(Exception):
    """The summarizer could not produce a summary; the message is safe to log (no keys)."""


class TransientLLMError(Exception):
    """One attempt failed in a way another attempt may cure: rate limit, 5xx, timeout, malformed reply.

    `retry_after` is the server's own wait in seconds (Gemini's `retryDelay`, HTTP `Retry-After`),
    when it gave one. The message is safe to log (no keys).
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one LLM call consumed, as the backend reported them (0 when it did not)."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Completion:
    """One LLM reply: the raw text (JSON expected), its token usage, and whether the model stopped
    at its output limit (OpenAI's finish_reason "length", Gemini's MAX_TOKENS) mid-reply."""

    text: str
    usage: Usage
    cut_off: bool = False


class ChatModel(Protocol):
    """One LLM backend (Gemini, an OpenAI-compatible server): one attempt of one JSON completion.

    Retries, parsing and fallbacks live above it (`bot.summarize.llm`), in one place for every
    backend. `complete` raises TransientLLMError for what a retry may cure and SummarizerError
    for a refusal no retry cures (bad key, unknown model).
    """

    model_key: str  # "gemini:<model>" or "openai:<model>"; part of every cache key
    vendor: str  # "Gemini", "OpenAI-compatible API": how logs and errors name the backend

    async def complete(self, prompt: str, schema: type[BaseModel]) -> Completion: ...

    async def aclose(self) -> None: ...


class Summarizer(Protocol):
    model_key: str  # "gemini:<model>", "openai:<model>" or "extractive"; part of the cache key
    prompt_version: str  # changes whenever the prompt or schema does; part of the cache key

    async def summarize(self, paper: Paper, language: str, full_text: str | None) -> SummaryContent: ...
