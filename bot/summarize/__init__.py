"""Summarizers (Gemini, OpenAI-compatible servers, an offline extractive one) and the caching service."""

from bot.summarize.base import Summarizer, SummarizerError
from bot.summarize.extractive import ExtractiveSummarizer
from bot.summarize.gemini import GeminiSummarizer
from bot.summarize.languages import language_name, normalize_language
from bot.summarize.openai_compat import OpenAISummarizer
from bot.summarize.service import SummaryService

__all__ = [
    "ExtractiveSummarizer",
    "GeminiSummarizer",
    "OpenAISummarizer",
    "Summarizer",
    "SummarizerError",
    "SummaryService",
    "language_name",
    "normalize_language",
]
