"""A chat-neutral view of an answer to /ask (bot.ask.Answer), which each chat renderer marks up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.render.card import clip, one_line
from bot.render.labels import Labels, labels_for

if TYPE_CHECKING:  # the renderers only read an Answer; bot.ask brings in the retrieval stack
    from bot.ask import Answer


@dataclass(frozen=True, slots=True)
class QuoteLine:
    text: str  # the quote, in typographic quotation marks
    where: str  # "p. 3", "abstract", or the not-found notice
    verified: bool


@dataclass(frozen=True, slots=True)
class AnswerView:
    labels: Labels
    title: str
    abs_url: str
    notes: list[str]  # no LLM; abstract only
    text: str
    quotes: list[QuoteLine]
    provenance: str


def answer_view(answer: Answer) -> AnswerView:
    lb = labels_for(answer.language)
    notes = []
    if not answer.from_llm:
        notes.append(lb.no_llm_answer)
    if not answer.full_text:
        notes.append(lb.abstract_only_answer)
    quotes = []
    for q in answer.quotes:
        if not q.quote:
            continue
        text = f"“{clip(one_line(q.quote), 1200)}”"
        if not q.verified:
            quotes.append(QuoteLine(text, lb.not_found, False))
        else:
            quotes.append(QuoteLine(text, lb.page.format(page=q.page) if q.page else lb.in_abstract, True))
    provenance = lb.extractive if not answer.from_llm else f"{lb.generated_by}{lb.colon}{answer.generated_by}"
    return AnswerView(
        labels=lb,
        title=clip(one_line(answer.paper.title), 300),
        abs_url=answer.paper.abs_url,
        notes=notes,
        text=one_line(answer.text),
        quotes=quotes,
        provenance=provenance,
    )
