"""Summarizers (Gemini, OpenAI-compatible servers in `openai_compat`, an offline extractive one), the cache service.

`openai_compat` is not imported here: the openai package would slow every command's start-up.
"""

from bot.summarize.base import Summarizer, SummarizerError
from bot.summarize.extractive import ExtractiveSummarizer
from bot.summarize.gemini import GeminiSummarizer
from bot.summarize.languages import language_name, normalize_language
from bot.summarize.service import SummaryService

__all__ = [
    "ExtractiveSummarizer",
    "GeminiSummarizer",
    "Summarizer",
    "SummarizerError",
    "SummaryService",
    "language_name",
    "normalize_language",
]
