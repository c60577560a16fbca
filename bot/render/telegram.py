"""Telegram messages in HTML parse mode: a paper's card or photo caption, its breakdown, digest lists.

Only the tags Telegram accepts are used (b, i, a), and every dynamic string goes through
`html.escape`. Limits are checked on the raw HTML, counted in UTF-16 code units: Telegram limits the
text after parsing, which is never longer, so a message that passes here always passes there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import date
from html import escape, unescape
from typing import TYPE_CHECKING

from bot.models import MatchReason, Paper, Summary
from bot.render.answer import answer_blocks
from bot.render.card import (
    PaperCard,
    Token,
    breakdown_sections,
    build_card,
    clip,
    one_line,
    short_authors,
    split_tokens,
    utf16_len,
    why_variants,
)
from bot.render.labels import labels_for

if TYPE_CHECKING:  # the renderers only read an Answer; bot.ask brings in the retrieval stack
    from bot.ask import Answer

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024

_HTML_TOKEN = re.compile(
    r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)[^>]*>|&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[a-zA-Z][a-zA-Z0-9]*);|.", re.S
)


def _tokens(text: str) -> Iterator[Token]:
    for m in _HTML_TOKEN.finditer(text):
        raw = m.group(0)
        if m.group(2):
            name = m.group(2).lower()
            yield Token(raw, closes=name) if m.group(1) else Token(raw, opens=name)
        else:
            yield Token(raw, unescape(raw))


def split_html(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Telegram HTML cut into messages of at most `limit`, never inside a tag or an entity.

    Tags open at a cut are closed at the end of one piece and reopened at the start of the next.
    """
    return split_tokens(list(_tokens(text)), limit)


def _link(url: str, text: str) -> str:
    return f'<a href="{escape(url)}">{escape(text)}</a>'


def _compose(card: PaperCard, takeaways: Sequence[str], *, caption: bool) -> str:
    lb = card.labels
    head = [f"<b>{_link(card.abs_url, card.title)}</b>"]
    if not caption:
        if card.title_translated:
            head.append(f"<i>{escape(card.title_translated)}</i>")
        if card.short_authors:
            head.append(escape(card.short_authors))
        if card.comment:
            head.append(f"<i>{escape(card.comment)}</i>")
    blocks = ["\n".join(head)]
    if card.summary:
        blocks.append(escape(card.summary) if caption else f"<b>{escape(lb.summary)}</b>\n{escape(card.summary)}")
    if takeaways:
        bullets = "\n".join(f"• {escape(t)}" for t in takeaways)
        blocks.append(bullets if caption else f"<b>{escape(lb.key_takeaways)}</b>\n{bullets}")
    if card.unsupported_note:
        blocks.append(f"<b>{escape(card.unsupported_note)}</b>")
    if card.why:
        blocks.append(why_html(card))
    blocks.append(f"<i>{escape(card.provenance)}</i>")
    return "\n\n".join(blocks)


def why_html(card: PaperCard) -> str:
    """The topics that matched a pushed paper: "#id query" and the matched terms, underlined."""
    lines = []
    for why in card.why:
        topic = f"#{why.topic_id} " if why.topic_id is not None else ""
        terms = ", ".join(f"<b><u>{escape(t)}</u></b>" for t in why.terms)
        lines.append(
            f"🔎 {escape(card.labels.matched)}{card.labels.colon}{topic}<code>{escape(why.query)}</code>"
            + (f" — {terms}" if terms else "")
        )
    return "\n".join(lines)


def _fit(card: PaperCard, limit: int, compose: Callable[[PaperCard, Sequence[str]], str]) -> str:
    """Say less of why it matched, then drop takeaways from the end, until it fits; failing that,
    shorten the longest free text."""
    for n in range(len(card.takeaways), -1, -1):
        for why in why_variants(card.why):
            text = compose(replace(card, why=why), card.takeaways[:n])
            if utf16_len(text) <= limit:
                return text
    card = replace(card, why=why_variants(card.why)[-1])
    while (over := utf16_len(text) - limit) > 0:
        fields = {"comment": card.comment or "", "title_translated": card.title_translated or "",
                  "summary": card.summary, "title": card.title}
        name = max(fields, key=lambda k: utf16_len(fields[k]))
        if utf16_len(fields[name]) <= 1:
            raise ValueError(f"a post for {card.arxiv_id} cannot fit in {limit} characters")
        card = replace(card, **{name: clip(fields[name], max(utf16_len(fields[name]) - over, 1))})
        text = compose(card, [])
    return text


def card_html(summary: Summary, why: Sequence[MatchReason] = ()) -> str:
    """The paper's post: linked title, authors, comment, one-line summary, takeaways (marked where
    their quote was not found), the numbers not found in the paper, why it matched, provenance."""
    return _fit(build_card(summary, why), MESSAGE_LIMIT, lambda c, t: _compose(c, t, caption=False))


def caption_html(summary: Summary, why: Sequence[MatchReason] = ()) -> str:
    """The same post short enough for a photo caption: linked title, summary, what takeaways fit."""
    return _fit(build_card(summary, why), CAPTION_LIMIT, lambda c, t: _compose(c, t, caption=True))


def breakdown_html(summary: Summary) -> str:
    """The numbered eight-part breakdown as one HTML text, before splitting into messages."""
    card = build_card(summary)
    lb = card.labels
    blocks = [f"<b>{escape(lb.full_breakdown)}</b>{lb.colon}{_link(card.abs_url, card.title)}"]
    blocks += breakdown_sections(
        card,
        head=lambda n, h: f"<b>{n}. {escape(h)}</b>",
        bold=lambda t: f"<b>{escape(t)}</b>",
        text=escape,
    )
    if card.unsupported_note:
        blocks.append(f"<b>{escape(card.unsupported_note)}</b>")
    blocks.append(f"<i>{escape(card.provenance)}</i>")
    return "\n\n".join(blocks)


def breakdown_messages(summary: Summary) -> list[str]:
    return split_html(breakdown_html(summary))


def digest_header_html(topic_or_title: str, day: date, count: int) -> str:
    noun = "paper" if count == 1 else "papers"
    name = clip(one_line(topic_or_title), 3000)
    return f"<b>{escape(name)} — {day.isoformat()}: {count} new {noun}</b>"


def compact_list_html(items: Sequence[Summary | Paper], heading: str | None = None) -> list[str]:
    """Papers beyond a chat's maximum: one linked title with its authors per line, in messages."""
    if not items:
        return []
    if heading is None:
        first = items[0]
        heading = labels_for(first.language if isinstance(first, Summary) else "en").more_papers
    lines = [f"<b>{escape(heading)}</b>"]
    for item in items:
        p = item.paper if isinstance(item, Summary) else item
        line = f"• {_link(p.abs_url, clip(one_line(p.title), 400))}"
        if p.authors:
            line += f" — {escape(short_authors(p.authors))}"
        lines.append(line)
    return split_html("\n".join(lines))


def answer_html(answer: Answer) -> list[str]:
    """An answer to /ask as messages (bot.render.answer.answer_blocks in Telegram HTML)."""
    blocks = answer_blocks(
        answer,
        heading=lambda v: f"<b>{escape(v.labels.answer)}</b>{v.labels.colon}{_link(v.abs_url, v.title)}",
        bold=lambda t: f"<b>{escape(t)}</b>",
        italic=lambda t: f"<i>{escape(t)}</i>",
        text=escape,
        quote=lambda t: f"<blockquote>{escape(t)}</blockquote>",
    )
    return split_html("\n\n".join(blocks))
