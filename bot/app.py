"""Build the long-lived objects once, at start, and hand them to whoever needs them."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.arxiv_source import ArxivSource
from bot.buttons import ButtonSigner, load_signer
from bot.config import Settings, is_loopback_url
from bot.metrics import Metrics
from bot.pdf import PdfService
from bot.ratelimit import RateLimiter
from bot.store import Store
from bot.summarize.base import ChatModel, Usage
from bot.summarize.extractive import ExtractiveSummarizer
from bot.summarize.gemini import GeminiModel
from bot.summarize.llm import LlmSummarizer
from bot.summarize.service import SummaryService

# A /summary user waits for this: a dead endpoint falls back within about 2 minutes.
LLM_TIMEOUT = 45.0
# A model on one's own machine may take minutes for a paper's first pages; nobody's quota is at stake.
LOCAL_LLM_TIMEOUT = 300.0


@dataclass
class Components:
    settings: Settings
    store: Store
    limiter: RateLimiter
    arxiv: ArxivSource
    pdfs: PdfService
    summaries: SummaryService
    buttons: ButtonSigner  # signs and checks the data of our buttons
    metrics: Metrics = field(default_factory=Metrics)

    async def aclose(self) -> None:
        await self.summaries.aclose()
        await self.arxiv.aclose()
        await self.pdfs.aclose()
        await self.store.close()


async def build_components(settings: Settings) -> Components:
    store = await Store.open(settings.db_path)
    try:
        buttons = await load_signer(store)
    except BaseException:
        await store.close()  # an open connection would keep the process alive
        raise
    metrics = Metrics()
    limiter = RateLimiter(settings.arxiv_interval)
    arxiv = ArxivSource(settings.arxiv_api_url, settings.arxiv_rss_url, limiter)
    pdfs = PdfService(settings.cache_dir, limiter, max_bytes=settings.pdf_max_mb * 2**20)
    extractive = ExtractiveSummarizer()

    async def on_usage(model_key: str, usage: Usage) -> None:
        metrics.llm_call(model_key, usage.input_tokens, usage.output_tokens)
        await store.record_llm_call(model_key, usage.input_tokens, usage.output_tokens)

    model = chat_model(settings)
    primary = LlmSummarizer(model, attempts=3, on_usage=on_usage) if model is not None else extractive
    summaries = SummaryService(
        store, primary, fallback=extractive, text_source=pdfs.paper_text, on_summary=metrics.summary
    )
    return Components(settings, store, limiter, arxiv, pdfs, summaries, buttons, metrics)


def chat_model(settings: Settings) -> ChatModel | None:
    """The LLM backend that `settings.backend` names (SPEC's SUMMARIZER and its `auto` rule); None: extractive."""
    if settings.backend == "gemini":
        return GeminiModel(
            settings.gemini_api_key,  # type: ignore[arg-type]  # backend "gemini" implies a key
            settings.gemini_model,
            base_url=settings.gemini_base_url,
            timeout=LLM_TIMEOUT,
        )
    if settings.backend == "openai":
        # Imported here: the openai package costs every other command's start-up for nothing.
        from bot.summarize.openai_compat import OpenAIModel

        url = settings.openai_endpoint
        return OpenAIModel(
            settings.openai_model,  # type: ignore[arg-type]  # the settings refuse "openai" without a model
            base_url=url,
            api_key=settings.openai_api_key,
            timeout=LOCAL_LLM_TIMEOUT if is_loopback_url(url) else LLM_TIMEOUT,
        )
    return None
