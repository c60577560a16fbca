"""A chat-neutral view of an answer to /ask (bot.ask.Answer), which each chat renderer marks up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.render.card import clip, one_line
from bot.render.labels import Labels, labels_for

# What an answer shows of the model's text: a question can ask it to ramble ("repeat this 10,000
# times"), and the answer with its quotes must stay a message or two (Telegram: 4,096 characters).
ANSWER_CHARS = 2000
QUOTE_CHARS = 900  # a passage's size (bot.ask.PASSAGE_CHARS): a longer quote is not one passage

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
        text = f"“{clip(one_line(q.quote), QUOTE_CHARS)}”"
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
        text=clip(one_line(answer.text), ANSWER_CHARS),
        quotes=quotes,
        provenance=provenance,
    )


def answer_blocks(
    answer: Answer,
    *,
    heading: Callable[[AnswerView], str],
    bold: Callable[[str], str],
    italic: Callable[[str], str],
    text: Callable[[str], str],
    quote: Callable[[str], str],
) -> list[str]:
    """An answer's blocks in one platform's markup: the heading with the paper, notes (no LLM,
    abstract only), the answer, the quotes with their pages (a quote not found in the paper says
    so in bold), provenance. `text` escapes plain text; `quote` sets a passage apart."""
    v = answer_view(answer)
    blocks = [heading(v)]
    blocks += [italic(n) for n in v.notes]
    if v.text:
        blocks.append(text(v.text))
    if v.quotes:
        lines = [f"{quote(q.text)}{bold(q.where) if not q.verified else f'({text(q.where)})'}" for q in v.quotes]
        blocks.append(bold(v.labels.quotes) + "\n" + "\n".join(lines))
    blocks.append(italic(v.provenance))
    return blocks
