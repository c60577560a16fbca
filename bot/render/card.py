"""A chat-neutral view of one summary, and the length helpers both chat renderers share.

Lengths are counted in UTF-16 code units because that is how Telegram (and Discord's clients)
count; a character outside the Basic Multilingual Plane counts twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.models import MatchReason, Summary
from bot.render.labels import Labels, labels_for


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def one_line(text: str | None) -> str:
    """arXiv titles and abstracts carry hard line breaks and runs of spaces; a rendering wants neither."""
    return " ".join((text or "").split())


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-16 units, at a word boundary when one is near, with an ellipsis."""
    if utf16_len(text) <= limit:
        return text
    kept: list[str] = []
    size = 0
    for ch in text:
        size += utf16_len(ch)
        if size > limit - 1:  # one unit is reserved for the ellipsis
            break
        kept.append(ch)
    cut = "".join(kept)
    space = cut.rfind(" ")
    if space > len(cut) * 0.6:
        cut = cut[:space]
    return cut.rstrip() + "…"


def short_authors(authors: Sequence[str], max: int = 4) -> str:  # noqa: A002 - the name callers use
    """All names when there are at most `max`, else the first `max - 1` and "et al."."""
    names = [one_line(a) for a in authors if a.strip()]
    if len(names) <= max:
        return ", ".join(names)
    return ", ".join(names[: max - 1 or 1]) + " et al."


# A breakdown lists at most this many authors (and affiliations); the rest are counted, and the
# full list is one click away on the paper's arXiv page. A 2,900-author paper would otherwise
# fill ten chat messages with names.
MAX_NAMES = 10
MAX_QUOTE_CHARS = 400  # of one passage under "Sources"


def bounded_names(names: Sequence[str], more: str, sep: str = ", ", limit: int = MAX_NAMES) -> str:
    """"A, B, C … and 2,897 more": the first `limit` names, then `more` (with `{count}`) for the rest."""
    if len(names) <= limit:
        return sep.join(names)
    return f"{sep.join(names[:limit])} … {more.format(count=len(names) - limit)}"


def model_name(generated_by: str) -> str:
    """`gemini:gemini-2.5-flash` -> `gemini-2.5-flash`: the provider is already in the model's name."""
    return generated_by.split(":", 1)[1] if ":" in generated_by else generated_by


@dataclass(frozen=True, slots=True)
class Item:
    """A numbered sub-item of a breakdown section: "(n) label: text", the label may be empty."""

    label: str
    text: str


@dataclass(frozen=True, slots=True)
class Section:
    """One of the eight numbered items of the breakdown; `text`, `items` or both."""

    number: int
    heading: str
    text: str = ""
    items: tuple[Item, ...] = ()


@dataclass(frozen=True, slots=True)
class PaperCard:
    labels: Labels
    arxiv_id: str  # with its version
    title: str
    title_translated: str | None  # None when it is the title itself
    abs_url: str
    pdf_url: str | None
    code_url: str | None
    authors: list[str]
    short_authors: str
    comment: str | None
    abstract: str
    summary: str
    takeaways: list[str]
    sections: list[Section]
    provenance: str
    notice: str
    extractive: bool
    # Grounding: the warning that lists numbers the paper does not hold (None: there are none),
    # and why a pushed paper reached the chat (empty outside the push).
    unsupported_note: str | None = None
    why: tuple[MatchReason, ...] = ()


def breakdown_sections(
    card: PaperCard,
    *,
    head: Callable[[int, str], str],
    bold: Callable[[str], str],
    text: Callable[[str], str],
    item_prefix: str = "",
) -> list[str]:
    """The numbered sections, one block each, in whatever markup `head`/`bold`/`text` write."""
    colon = card.labels.colon
    blocks = []
    for s in card.sections:
        lines = [f"{head(s.number, s.heading)}{colon}{text(s.text)}".rstrip()]
        for k, item in enumerate(s.items, 1):
            label = f"{bold(item.label)}{colon}" if item.label else ""
            lines.append(f"{item_prefix}({k}) {label}{text(item.text)}")
        blocks.append("\n".join(lines))
    return blocks


def notice_lines(labels: Labels, generated_by: Sequence[str]) -> list[str]:
    """The machine-generated warning for text from these generators (one summary or a whole digest)."""
    models = sorted({model_name(g) for g in generated_by if g != "extractive"})
    lines = [labels.notice.format(model=", ".join(models))] if models else []
    if "extractive" in generated_by:
        lines.append(labels.extractive + labels.full_stop)
    lines.append(labels.triage_notice)
    return lines


def provenance_text(summary: Summary, labels: Labels) -> str:
    source = labels.from_full_text if summary.full_text_used else labels.from_abstract
    if summary.is_extractive:
        return f"{labels.extractive} · {source}"
    return f"{labels.generated_by}{labels.colon}{summary.generated_by} · {source}"


_NUMBER_END = r"(?![\d.,]?\d)"


def mark_numbers(text: str, numbers: Sequence[str]) -> str:
    """`text` with "⚠" after each of `numbers` (unsupported ones, as the summary wrote them)."""
    for n in sorted(set(numbers), key=len, reverse=True):
        text = re.sub(rf"(?<![\d.,]){re.escape(n)}{_NUMBER_END}(?!⚠)", lambda m: m.group(0) + "⚠", text)
    return text


def marked_takeaways(summary: Summary, labels: Labels) -> list[str]:
    """The takeaways, each whose quote was not found in the paper followed by the notice saying so."""
    c = summary.content
    numbers = c.unsupported_numbers or []
    out = []
    for text, evidence in zip(c.key_takeaways, c.evidence_for_takeaways(), strict=True):
        if text.strip():
            line = mark_numbers(one_line(text), numbers)
            # A summary stored before grounding existed was never checked: "not found" would be untrue.
            notice = labels.not_found if c.evidence is not None else labels.not_checked
            out.append(line if evidence.verified else f"{line} {notice}")
    return out


def source_items(summary: Summary, labels: Labels) -> tuple[Item, ...]:
    """The "Sources" of the breakdown: each takeaway's passage with its page, or the notice."""
    items = []
    for evidence in summary.content.evidence_for_takeaways():
        # Clipped: a passage can be as long as the page it came from, and the breakdown stays a few messages.
        quote = f"“{clip(one_line(evidence.quote), MAX_QUOTE_CHARS)}”" if evidence.quote else labels.no_quote
        if not evidence.verified:
            items.append(Item("", f"{labels.not_found}{labels.colon}{quote}"))
            continue
        where = labels.page.format(page=evidence.page) if evidence.page else labels.in_abstract
        items.append(Item("", f"{quote} ({where})"))
    return tuple(items)


def unsupported_note(summary: Summary, labels: Labels) -> str | None:
    """The notice listing numbers the paper does not hold: the first LISTED_NUMBERS of them (each is
    also marked where it is written), so a degenerate reply cannot make a post too long to send."""
    numbers = summary.content.unsupported_numbers or []
    if not numbers:
        return None
    listed = labels.list_sep.join(numbers[:LISTED_NUMBERS])
    if len(numbers) > LISTED_NUMBERS:
        listed += labels.more_numbers.format(n=len(numbers) - LISTED_NUMBERS)
    return labels.unsupported_numbers.format(numbers=listed)


LISTED_NUMBERS = 12  # unsupported numbers named in the notice
WHY_TOPICS = 3  # topics named on a post
WHY_TERMS = 8  # matched terms named per topic
WHY_TERM_CHARS = 60
WHY_QUERY_CHARS = 300


def why_shown(why: Sequence[MatchReason]) -> tuple[MatchReason, ...]:
    """What a post shows of why it matched: WHY_TOPICS topics, each with WHY_TERMS terms, clipped."""
    return tuple(
        MatchReason(w.topic_id, clip(one_line(w.query), WHY_QUERY_CHARS),
                    tuple(clip(one_line(t), WHY_TERM_CHARS) for t in w.terms[:WHY_TERMS]))
        for w in why[:WHY_TOPICS]
    )


def why_variants(why: Sequence[MatchReason]) -> list[tuple[MatchReason, ...]]:
    """Ever shorter ways to say why a post matched, for a post that is too long: all of it; the
    first topic with its terms; the first topic's id and the start of its query. SPEC wants the
    topic (id and query) named on every pushed post, so the last one is never dropped."""
    shown = why_shown(why)
    if not shown:
        return [()]
    first = shown[0]
    return [shown, (first,), (MatchReason(first.topic_id, clip(first.query, 80)),)]


def build_card(summary: Summary, why: Sequence[MatchReason] = ()) -> PaperCard:
    p, c = summary.paper, summary.content
    lb = labels_for(summary.language)
    numbers = c.unsupported_numbers or []
    none = lb.none
    title = one_line(p.title)
    translated = one_line(c.title_translated)
    if translated.casefold() == title.casefold():
        translated = ""
    authors = [one_line(a) for a in p.authors if a.strip()]
    affiliations = [one_line(a) for a in (c.affiliations or p.affiliations) if a.strip()]
    keywords = [one_line(k) for k in c.keywords if k.strip()]
    steps = [one_line(s) for s in c.method if s.strip()]
    code_url = c.code_url or None
    links = f"{lb.paper}{lb.colon}{p.abs_url} · {lb.code}{lb.colon}{code_url or none}"
    sections = [
        Section(1, lb.title, f"{title} — {translated}" if translated else title),
        Section(2, lb.authors, bounded_names(authors, lb.more_names) or none),
        Section(3, lb.affiliation, bounded_names(affiliations, lb.more_names, lb.list_sep) or none),
        Section(4, lb.keywords, lb.list_sep.join(keywords) or none),
        Section(5, lb.links, links),
        Section(
            6,
            lb.abstract_summary,
            items=(
                Item(lb.background, one_line(c.background) or none),
                Item(lb.prior_work, one_line(c.prior_work) or none),
                # SummaryContent has no separate method overview: the first step is the closest to one.
                Item(lb.method, steps[0] if steps else none),
                Item(lb.results, mark_numbers(one_line(c.results), numbers) or none),
            ),
        ),
        Section(7, lb.method_steps, "" if steps else none, tuple(Item("", s) for s in steps)),
        Section(8, lb.conclusion, one_line(c.conclusion) or none),
    ]
    if c.key_takeaways and c.evidence is not None:
        sections.append(Section(9, lb.sources, items=source_items(summary, lb)))
    return PaperCard(
        labels=lb,
        arxiv_id=p.versioned_id,
        title=title,
        title_translated=translated or None,
        abs_url=p.abs_url,
        pdf_url=p.pdf_url,
        code_url=code_url,
        authors=authors,
        short_authors=short_authors(authors),
        comment=one_line(p.comment) or None,
        abstract=one_line(p.abstract),
        summary=mark_numbers(one_line(c.summary), numbers),
        takeaways=marked_takeaways(summary, lb),
        sections=sections,
        provenance=provenance_text(summary, lb),
        notice=" ".join(notice_lines(lb, [summary.generated_by])),
        extractive=summary.is_extractive,
        unsupported_note=unsupported_note(summary, lb),
        why=why_shown(why),
    )


# --- splitting ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    """An unbreakable piece of a message: a character, an HTML entity, an escape pair or a tag."""

    raw: str
    text: str = ""  # what the reader sees; "" for a tag
    opens: str | None = None  # tag name, for an opening tag
    closes: str | None = None  # tag name, for a closing tag


_SENTENCE_END = ".!?;"
_CJK_STOP = "。！？；"
_CJK_SOFT = "，、："


def _rank(tail: str) -> int:
    """How good a place to cut is right after the visible text `tail` (its last two characters)."""
    prev2, prev = (" " + tail)[-2:]
    if prev == "\n":
        if prev2 in ":：":  # a heading line belongs with what it introduces
            return 0
        return 4 if prev2 == "\n" else 3
    if prev in _CJK_STOP or (prev.isspace() and prev2 in _SENTENCE_END):
        return 2
    if prev.isspace() or prev in _CJK_SOFT:
        return 1
    return 0


def split_tokens(tokens: Sequence[Token], limit: int) -> list[str]:
    """Cut `tokens` into pieces of at most `limit` UTF-16 units, tags closed and reopened at each cut.

    The cut falls on the best boundary in reach: a blank line, then a line break, then a sentence
    end, then a space, and only failing all of those between two characters; never inside a tag,
    an entity or an escape. Whitespace at the cuts is dropped, as chat clients would drop it anyway.
    """
    pieces: list[str] = []
    stack: tuple[Token, ...] = ()  # tags open where the next piece starts
    i, n = 0, len(tokens)
    while True:
        while i < n and tokens[i].text.isspace():
            i += 1
        if i >= n:
            return pieces
        head = "".join(t.raw for t in stack)
        size = utf16_len(head)
        closing = sum(len(t.opens or "") + 3 for t in stack)
        cur, tail, j = stack, "", i
        best: dict[int, tuple[int, tuple[Token, ...]]] = {}
        while j < n:
            t = tokens[j]
            nxt, nxt_closing = cur, closing
            if t.opens:
                nxt, nxt_closing = cur + (t,), closing + len(t.opens) + 3
            elif t.closes:
                for k in range(len(cur) - 1, -1, -1):
                    if cur[k].opens == t.closes:
                        nxt, nxt_closing = cur[:k] + cur[k + 1 :], closing - len(t.closes) - 3
                        break
            step = utf16_len(t.raw)
            if size + step + nxt_closing > limit:
                break
            size, cur, closing, j = size + step, nxt, nxt_closing, j + 1
            tail = (tail + t.text)[-2:]
            if not t.opens:  # a cut right after an opening tag would leave it empty
                best[_rank(tail)] = (j, cur)
        if j == n:
            end, end_stack = n, cur
        elif best:
            end, end_stack = best[max(best)]
        else:
            raise ValueError(f"cannot fit {tokens[i].raw[:40]!r} into {limit} characters")
        k = end
        while k > i and tokens[k - 1].text.isspace():
            k -= 1
        body = tokens[i:k]
        if any(t.text.strip() for t in body):
            tail_tags = "".join(f"</{t.opens}>" for t in reversed(end_stack))
            pieces.append(head + "".join(t.raw for t in body) + tail_tags)
        stack, i = end_stack, end
