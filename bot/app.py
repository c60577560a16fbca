"""Build the long-lived objects once, at start, and hand them to whoever needs them."""

from __future__ import annotations

from dataclasses import dataclass

from bot.arxiv_source import ArxivSource
from bot.buttons import ButtonSigner, load_signer
from bot.config import Settings
from bot.pdf import PdfService
from bot.ratelimit import RateLimiter
from bot.store import Store
from bot.summarize.extractive import ExtractiveSummarizer
from bot.summarize.gemini import GeminiSummarizer
from bot.summarize.service import SummaryService


@dataclass
class Components:
    settings: Settings
    store: Store
    limiter: RateLimiter
    arxiv: ArxivSource
    pdfs: PdfService
    summaries: SummaryService
    buttons: ButtonSigner  # signs and checks the data of our buttons

    async def aclose(self) -> None:
        await self.summaries.aclose()
        await self.arxiv.aclose()
        await self.pdfs.aclose()
        await self.store.close()


async def build_components(settings: Settings) -> Components:
    store = await Store.open(settings.db_path)
    limiter = RateLimiter(settings.arxiv_interval)
    arxiv = ArxivSource(settings.arxiv_api_url, settings.arxiv_rss_url, limiter)
    pdfs = PdfService(settings.cache_dir, limiter, max_bytes=settings.pdf_max_mb * 2**20)
    extractive = ExtractiveSummarizer()
    primary = (
        GeminiSummarizer(
            settings.gemini_api_key,  # type: ignore[arg-type]  # use_gemini implies a key
            settings.gemini_model,
            base_url=settings.gemini_base_url,
            # A /summary user waits for this: a dead endpoint falls back within about 2 minutes.
            timeout=45.0,
            attempts=3,
        )
        if settings.use_gemini
        else extractive
    )
    summaries = SummaryService(
        store, primary, fallback=extractive, text_source=pdfs.first_pages_text
    )
    return Components(settings, store, limiter, arxiv, pdfs, summaries, await load_signer(store))
