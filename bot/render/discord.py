"""Discord renderings: a paper's embed (as a dict for `discord.Embed.from_dict`) and plain
Markdown messages for the breakdown. Dynamic text is Markdown-escaped; messages are also
mention-escaped so an abstract cannot ping @everyone. Lengths are counted in UTF-16 code units,
which is never less than what Discord counts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from discord.utils import escape_markdown, escape_mentions

from bot.models import MatchReason, Summary
from bot.render.answer import answer_blocks
from bot.render.card import (
    PaperCard,
    Token,
    breakdown_sections,
    build_card,
    clip,
    split_tokens,
    utf16_len,
    why_variants,
)

if TYPE_CHECKING:  # the renderers only read an Answer; bot.ask brings in the retrieval stack
    from bot.ask import Answer

MESSAGE_LIMIT = 2000
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
EMBED_TOTAL_LIMIT = 6000
ARXIV_RED = 0xB31B1B

# A backslash escape stays with the character it escapes.
_TEXT_TOKEN = re.compile(r"\\.|.", re.S)


def split_text(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Plain text or Markdown cut into messages of at most `limit`, at the best boundary in reach:
    blank line, line break, sentence end, space, and only failing those anywhere."""
    return split_tokens([Token(m.group(0), m.group(0)[-1]) for m in _TEXT_TOKEN.finditer(text)], limit)


def _esc(text: str) -> str:
    return escape_markdown(escape_mentions(text))


def _fit(text: str, limit: int) -> str:
    """Escaped `text` within `limit`; escaping lengthens text, so clip the source until it fits."""
    out, budget = escape_markdown(text), utf16_len(text)
    while utf16_len(out) > limit:
        budget -= max(utf16_len(out) - limit, 1)
        out = escape_markdown(clip(text, max(budget, 1)))
    return out


def embed_length(embed: dict[str, Any]) -> int:
    """What Discord adds up against its 6000-character limit for one embed."""
    parts = [embed.get("title", ""), embed.get("description", ""),
             embed.get("footer", {}).get("text", ""), embed.get("author", {}).get("name", "")]
    parts += [f["name"] + f["value"] for f in embed.get("fields", [])]
    return sum(utf16_len(p) for p in parts)


def why_text(card: PaperCard, limit: int = FIELD_VALUE_LIMIT) -> str:
    """The topics that matched a pushed paper: "#id `query`" and the matched terms in bold, as
    much of it as fits in `limit` (never cut inside the Markdown)."""
    text = ""
    for why in why_variants(card.why):
        lines = []
        for w in why:
            topic = f"#{w.topic_id} " if w.topic_id is not None else ""
            terms = ", ".join(f"**{_esc(t)}**" for t in w.terms)
            query = w.query.replace("`", "'")
            lines.append(f"🔎 {topic}`{query}`" + (f" — {terms}" if terms else ""))
        text = "\n".join(lines)
        if utf16_len(text) <= limit:
            return text
    return clip(text, limit)  # one topic's start: at most a hundred characters, in a code span


def paper_embed(summary: Summary, why: Sequence[MatchReason] = ()) -> dict[str, Any]:
    """The paper's post: linked title, summary and takeaways (marked where their quote was not
    found), the numbers not found in the paper, authors, links, why it matched, provenance."""
    card = build_card(summary, why)
    lb = card.labels
    links = [f"[arXiv]({card.abs_url})"]
    if card.pdf_url:
        links.append(f"[PDF]({card.pdf_url})")
    if card.code_url:
        links.append(f"[{lb.code}]({card.code_url})")
    fields = []
    if card.title_translated:
        fields.append({"name": lb.title, "value": _fit(card.title_translated, FIELD_VALUE_LIMIT), "inline": False})
    if card.short_authors:
        fields.append({"name": lb.authors, "value": _fit(card.short_authors, FIELD_VALUE_LIMIT), "inline": False})
    if card.comment:
        fields.append({"name": lb.comment, "value": _fit(card.comment, FIELD_VALUE_LIMIT), "inline": False})
    # The slice only guards against an absurd code URL from the LLM; real links are far shorter.
    fields.append({"name": lb.links, "value": " · ".join(links)[:FIELD_VALUE_LIMIT], "inline": False})
    if card.why:
        fields.append({"name": lb.matched, "value": why_text(card), "inline": False})
    embed: dict[str, Any] = {
        "type": "rich",
        "title": _fit(card.title, TITLE_LIMIT),
        "url": card.abs_url,
        "color": ARXIV_RED,
        "fields": fields,
        "footer": {"text": _fit(card.provenance, FOOTER_LIMIT)},
    }
    summary_part = f"**{lb.summary}**\n{escape_markdown(card.summary)}"
    note = f"\n\n**{escape_markdown(card.unsupported_note)}**" if card.unsupported_note else ""
    for n in range(len(card.takeaways), -1, -1):
        bullets = "\n".join(f"- {escape_markdown(t)}" for t in card.takeaways[:n])
        embed["description"] = summary_part + (f"\n\n**{lb.key_takeaways}**\n{bullets}" if n else "") + note
        room = min(DESCRIPTION_LIMIT, EMBED_TOTAL_LIMIT - embed_length({**embed, "description": ""}))
        if utf16_len(embed["description"]) <= room:
            return embed
    # Even the summary alone is too long: clip it, keeping the notice of numbers not found.
    room -= utf16_len(note)
    embed["description"] = f"**{lb.summary}**\n" + _fit(card.summary, room - utf16_len(lb.summary) - 5) + note
    return embed


def breakdown_text(summary: Summary) -> str:
    """The numbered eight-part breakdown as one Markdown text, before splitting into messages."""
    card = build_card(summary)
    lb = card.labels
    blocks = [f"**{_esc(lb.full_breakdown)}**{lb.colon}{_esc(card.title)}\n<{card.abs_url}>"]
    blocks += breakdown_sections(
        card,
        head=lambda n, h: f"**{n}. {_esc(h)}**",
        bold=lambda t: f"**{_esc(t)}**",
        text=_esc,
    )
    if card.unsupported_note:
        blocks.append(f"**{_esc(card.unsupported_note)}**")
    blocks.append(f"*{_esc(card.provenance)}*")
    return "\n\n".join(blocks)


def breakdown_chunks(summary: Summary) -> list[str]:
    return split_text(breakdown_text(summary))


def answer_chunks(answer: Answer) -> list[str]:
    """An answer to /ask as messages (bot.render.answer.answer_blocks in Discord Markdown)."""
    blocks = answer_blocks(
        answer,
        heading=lambda v: f"**{_esc(v.labels.answer)}**{v.labels.colon}{_esc(v.title)}\n<{v.abs_url}>",
        bold=lambda t: f"**{_esc(t)}**",
        italic=lambda t: f"*{_esc(t)}*",
        text=_esc,
        quote=lambda t: f"> {_esc(t)}\n",
    )
    return split_text("\n\n".join(blocks))
