"""Summarizers (Gemini and an offline extractive one) and the caching service in front of them."""

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
