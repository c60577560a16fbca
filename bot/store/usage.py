"""Token usage of LLM calls: one row per completion, kept about a month, summed per model for `status`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.store.base import StoreBase

KEEP = timedelta(days=30)
_PRUNE_EVERY = 3600.0  # seconds (monotonic) between prunes in one process: one DELETE an hour is plenty


@dataclass(frozen=True, slots=True)
class LlmUsage:
    """Calls and tokens of one model (its model_key) over some period."""

    model: str
    calls: int
    input_tokens: int
    output_tokens: int


def _iso(at: datetime) -> str:
    # The same shape as now_iso(), so ISO strings compare as the times they stand for.
    return at.astimezone(UTC).isoformat(timespec="seconds")


class UsageStore(StoreBase):
    _usage_pruned_at: float | None = None

    async def record_llm_call(
        self, model: str, input_tokens: int, output_tokens: int, *, at: datetime | None = None
    ) -> None:
        """Store one completion's tokens; rows older than KEEP go, at most once an hour."""
        when = at or datetime.now(UTC)
        await self.execute(
            "INSERT INTO llm_calls(at, model, input_tokens, output_tokens) VALUES (?,?,?,?)",
            (_iso(when), model, max(0, int(input_tokens)), max(0, int(output_tokens))),
        )
        now = time.monotonic()
        if self._usage_pruned_at is None or now - self._usage_pruned_at >= _PRUNE_EVERY:
            self._usage_pruned_at = now
            await self.execute("DELETE FROM llm_calls WHERE at < ?", (_iso(when - KEEP),))

    async def llm_usage_since(self, since: datetime) -> list[LlmUsage]:
        """Calls, input and output tokens per model since `since` (inclusive), by model name."""
        rows = await self.fetchall(
            "SELECT model, COUNT(*) AS calls, SUM(input_tokens) AS input_tokens, "
            "SUM(output_tokens) AS output_tokens FROM llm_calls WHERE at >= ? GROUP BY model ORDER BY model",
            (_iso(since),),
        )
        return [
            LlmUsage(r["model"], int(r["calls"]), int(r["input_tokens"] or 0), int(r["output_tokens"] or 0))
            for r in rows
        ]
