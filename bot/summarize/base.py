"""What every summarizer offers the service."""

from __future__ import annotations

from typing import Protocol

from bot.models import Paper, SummaryContent


class SummarizerError(Exception):
    """The summarizer could not produce a summary; the message is safe to log (no keys)."""


class Summarizer(Protocol):
    model_key: str  # "gemini:<model>" or "extractive"; part of the cache key
    prompt_version: str  # changes whenever the prompt or schema does; part of the cache key

    async def summarize(self, paper: Paper, language: str, full_text: str | None) -> SummaryContent: ...
