"""Cached, deduplicated, rate-capped summaries, with the extractive summarizer as the safety net.

Two kinds of stored summary are provisional and replaced by a later request:
- a fallback's summary, made because the primary failed or its circuit breaker was open, is
  stored under the fallback's key and marked `stand_in_for` the primary; every request looks
  for the primary's summary first and asks the primary again (unless the breaker is open),
  returning the stored stand-in without making it again;
- a summary made without the paper's text because the text failed for a passing reason
  (`PaperText.retry`: download timeout, network, 5xx) is marked `text_retry` and made once
  more by the first request that can get the text; a bad PDF clears the mark for good.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from bot.background import running
from bot.grounding import ground
from bot.models import Paper, PaperText, Summary, SummaryContent
from bot.store import Store
from bot.summarize.base import Summarizer, SummarizerError
from bot.summarize.breaker import CircuitBreaker
from bot.summarize.extractive import ExtractiveSummarizer
from bot.summarize.languages import normalize_language

log = logging.getLogger(__name__)

# (arxiv_id, version, language, model_key, prompt_version): the summaries table's key
CacheKey = tuple[str, int, str, str, str]


def _stored_language(summarizer: Summarizer, language: str) -> str:
    # The extractive summarizer cannot translate; its summaries are what the abstract is: English.
    return "en" if summarizer.model_key == ExtractiveSummarizer.model_key else language


def _key(paper: Paper, language: str, summarizer: Summarizer) -> CacheKey:
    return (
        paper.arxiv_id,
        paper.version,
        _stored_language(summarizer, language),
        summarizer.model_key,
        summarizer.prompt_version,
    )


class SummaryService:
    def __init__(
        self,
        store: Store,
        primary: Summarizer,
        *,
        fallback: ExtractiveSummarizer | None = None,
        text_source: Callable[[Paper], Awaitable[str | PaperText | None]] | None = None,
        max_concurrency: int = 4,
        breaker: CircuitBreaker | None = None,
        claim_ttl: float = 60.0,
        claim_poll: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_summary: Callable[[str, str], None] = lambda backend, outcome: None,
    ) -> None:
        self.store = store
        self.primary = primary
        self.fallback = fallback
        # `text_source` gives the paper's text; a PaperText also says whether a missing text may come later.
        self.text_source = text_source
        # Consecutive failures of the primary open it: the fallback answers at once for a cool-down.
        self.breaker = breaker or CircuitBreaker(primary.model_key)
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._inflight: dict[CacheKey, asyncio.Task[Summary]] = {}
        self.on_summary = on_summary  # (model key, "ok" | "failed") after each summarizer call: metrics
        # Across processes on one database (SPEC "Scale"): the claim row of a key being made.
        # Its owner extends it every ttl/3 s while it works, so only a dead owner's claim lapses,
        # after at most ttl (s); poll (s) is how often a waiter looks.
        self.claim_ttl = claim_ttl
        self.claim_poll = claim_poll
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def cached(self, paper: Paper, language: str) -> Summary | None:
        """The primary summarizer's stored summary, if any (a fallback result does not count)."""
        return await self._get(paper, _key(paper, normalize_language(language), self.primary))

    async def stored(self, paper: Paper, language: str) -> Summary | None:
        """What a post of this paper showed: the primary's summary, else the stored fallback's."""
        hit = await self.cached(paper, language)
        if hit is None and self.fallback is not None:
            hit = await self._get(paper, _key(paper, normalize_language(language), self.fallback))
        return hit

    async def summarize(self, paper: Paper, language: str) -> Summary:
        """A stored summary, or a new one; concurrent requests for one key share one call.

        The primary's stored summary is the answer unless it waits for the paper's text; else
        the primary is asked (unless its breaker is open) and, when it fails, the fallback's
        stored summary is returned or a new one made (SummarizerError without a fallback).
        """
        lang = normalize_language(language)
        key = _key(paper, lang, self.primary)
        hit = await self._get(paper, key)
        if hit is not None and not hit.text_retry:
            return hit
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._single_flight(paper, lang, key))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._forget(key, t))
        # Each waiter gets its own copy: callers attach their own images to it.
        result = await asyncio.shield(task)
        return dataclasses.replace(result, images=list(result.images))

    def _forget(self, key: CacheKey, task: asyncio.Task[Summary]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter was cancelled

    async def _get(self, paper: Paper, key: CacheKey) -> Summary | None:
        _, _, language, model_key, prompt_version = key
        return await self.store.get_summary(paper, language, model_key, prompt_version)

    async def _single_flight(self, paper: Paper, language: str, key: CacheKey) -> Summary:
        """`_produce`, by one process at a time: a process that finds another's claim on the key
        waits for that summary to appear, and takes over if the claim expires first (its owner died)."""
        while True:
            hit = await self._get(paper, key)
            if hit is not None and not hit.text_retry:
                return hit
            if await self.store.claim_summary(key, self.owner, timedelta(seconds=self.claim_ttl), self.clock()):
                break
            await asyncio.sleep(self.claim_poll)
        try:
            async with running(lambda: self._keep_claim(key)):
                return await self._produce(paper, language, key)
        finally:
            await self.store.release_summary_claim(key, self.owner)

    async def _keep_claim(self, key: CacheKey) -> None:
        """Extend this process's claim on `key` while it works on it (a queue of summaries can
        outlast the claim's ttl)."""
        while True:
            await asyncio.sleep(self.claim_ttl / 3)
            try:
                await self.store.claim_summary(key, self.owner, timedelta(seconds=self.claim_ttl), self.clock())
            except Exception as exc:  # noqa: BLE001 - at worst another process makes it too
                log.warning("could not extend the claim on the summary of %s: %s", key[0], exc)

    async def _produce(self, paper: Paper, language: str, key: CacheKey) -> Summary:
        # A request that lost the race with a just-finished call finds its result here.
        hit = await self._get(paper, key)
        if hit is not None and not hit.text_retry:
            return hit
        if hit is None and self.fallback is not None and self.breaker.skipping():
            # The primary is skipped: a stand-in made earlier is the answer, at no cost.
            stored = await self._get(paper, _key(paper, language, self.fallback))
            if stored is not None and not stored.text_retry:
                return stored
        text = await self._full_text(paper)
        if hit is not None and text.text is None:
            # Still without the paper's text: keep the summary; for good when the text never comes.
            if not text.retry:
                await self.store.clear_summary_text_retry(hit, key[3])
                hit.text_retry = False
            return hit
        async with self._semaphore:
            # Checked here, after the wait for a slot: the calls ahead may have opened the breaker.
            if not self.breaker.allow():
                log.info(
                    "summary of %s in %s: %s skipped after repeated failures",
                    paper.versioned_id, key[2], self.primary.model_key,
                )
                if hit is not None:
                    return hit
                if self.fallback is None:
                    raise SummarizerError(
                        f"{self.primary.model_key} failed repeatedly and is paused; try again in a few minutes"
                    )
            else:
                started = time.monotonic()
                try:
                    content = await self.primary.summarize(paper, key[2], text.text)
                except SummarizerError as exc:
                    self.breaker.failure()
                    self.on_summary(self.primary.model_key, "failed")
                    log.warning(
                        "summary of %s in %s by %s failed after %.1f s: %s",
                        paper.versioned_id, key[2], self.primary.model_key, time.monotonic() - started, exc,
                    )
                    if hit is not None:
                        return hit  # made again at a later request
                    if self.fallback is None:
                        raise
                except BaseException:
                    self.breaker.abandon()
                    raise
                else:
                    self.breaker.success()
                    self.on_summary(self.primary.model_key, "ok")
                    log.info(
                        "summarized %s in %s by %s in %.1f s%s",
                        paper.versioned_id, key[2], self.primary.model_key, time.monotonic() - started,
                        " with the paper's text" if text.text else "",
                    )
                    return await self._put(paper, key, content, text)
        assert self.fallback is not None
        return await self._stand_in(paper, language, self.fallback, text)

    async def _stand_in(self, paper: Paper, language: str, fallback: Summarizer, text: PaperText) -> Summary:
        """The fallback's summary, stored under its own key and marked, so the primary is asked again next time."""
        fallback_key = _key(paper, language, fallback)
        stored = await self._get(paper, fallback_key)
        if stored is not None and not (stored.text_retry and text.text):
            return stored
        content = await fallback.summarize(paper, fallback_key[2], text.text)
        self.on_summary(fallback.model_key, "ok")
        stand_in_for = None if fallback.model_key == self.primary.model_key else self.primary.model_key
        return await self._put(paper, fallback_key, content, text, stand_in_for=stand_in_for)

    async def _put(
        self, paper: Paper, key: CacheKey, content: SummaryContent, text: PaperText, *, stand_in_for: str | None = None
    ) -> Summary:
        _, _, language, model_key, prompt_version = key
        summary = Summary(
            paper=paper,
            # Checked against the very text the summarizer saw, and stored with the summary.
            content=ground(content, paper, text.text),
            language=language,
            generated_by=model_key,
            full_text_used=text.text is not None,
            prompt_version=prompt_version,
            created_at=datetime.now(UTC),
            text_retry=text.text is None and text.retry,
            stand_in_for=stand_in_for,
        )
        await self.store.put_summary(summary, model_key)
        return summary

    async def _full_text(self, paper: Paper) -> PaperText:
        if self.text_source is None:
            return PaperText(None)
        try:
            got = await self.text_source(paper)
        except Exception as exc:  # the paper's text only improves a summary; never block one on it
            log.warning("no text of %s for its summary: %s", paper.versioned_id, exc)
            return PaperText(None, retry=True)
        text, retry = (got.text, got.retry) if isinstance(got, PaperText) else (got, False)
        if text and text.strip():
            return PaperText(text)
        return PaperText(None, retry=retry)

    async def aclose(self) -> None:
        close = getattr(self.primary, "aclose", None)
        if close is not None:
            await close()
