"""Markdown in the seed post's shape: one paper for the CLI, a day's papers as a Hexo post."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import date, datetime
from html import escape

from bot.models import Summary
from bot.render.card import breakdown_sections, build_card, notice_lines, one_line
from bot.render.labels import Labels, labels_for

# Abstracts and LLM text may contain "<tag"-like runs; a Markdown renderer would pass them through
# as raw HTML, so the "<" of anything that could open a tag becomes an entity.
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
_PLAIN_YAML = re.compile(r"[^\W\d][\w .,()/+-]*(?<! )")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def md(text: str) -> str:
    return _TAG_START.sub("&lt;", text)


def yaml_value(text: str) -> str:
    """A front-matter scalar: plain when that is unambiguous, else a double-quoted string.

    JSON's string syntax is a subset of YAML's double-quoted style, so json.dumps quotes safely.
    """
    if _PLAIN_YAML.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def _images_block(labels: Labels, images: Sequence[str]) -> str:
    tags = "\n".join(f'<img src="{escape(src)}" align="middle">' for src in images)
    return f"<details>\n  <summary>{labels.figures}</summary>\n{tags}\n</details>"


def render_paper_markdown(summary: Summary, images: list[str] | None = None) -> str:
    """One paper as the seed shows it: title, authors, abstract, PDF link, summary, takeaways,
    the eight-part breakdown and, when given, the figures."""
    card = build_card(summary)
    lb = card.labels
    pdf = f"[PDF]({card.pdf_url or card.abs_url})" + (f" {md(card.comment)}" if card.comment else "")
    blocks = [
        f"## {md(card.title)}",
        f"**{lb.authors}{lb.colon.strip()}{md(', '.join(card.authors))}**",
        md(card.abstract),
        pdf,
        f"**{lb.summary}**\n{md(card.summary)}",
    ]
    if card.takeaways:
        blocks.append(f"**{lb.key_takeaways}**\n" + "\n".join(f"- {md(t)}" for t in card.takeaways))
    if card.unsupported_note:
        blocks.append(f"> **{md(card.unsupported_note)}**")
    blocks.append(f"*{md(card.provenance)}*")
    items = breakdown_sections(
        card,
        head=lambda n, h: f"{n}. **{h}**",
        bold=lambda t: f"**{t}**",
        text=md,
        item_prefix="    - ",
    )
    blocks.append("\n".join(items))
    if images:
        blocks.append(_images_block(lb, images))
    return "\n\n".join(blocks) + "\n"


def _notice_block(labels: Labels, generated_by: Sequence[str]) -> str:
    lines = notice_lines(labels, generated_by)
    marks = ["⚠️"] * (len(lines) - 1) + ["🔴"]
    return "\n".join(f">{mark} {md(line)}" for mark, line in zip(marks, lines, strict=True))


def render_summary_markdown(summary: Summary, images: list[str] | None = None) -> str:
    """The CLI's `summary` output: the machine-generated notice, then the paper."""
    lb = labels_for(summary.language)
    return _notice_block(lb, [summary.generated_by]) + "\n\n" + render_paper_markdown(summary, images)


def render_digest_post(
    topic: str,
    day: date,
    summaries: list[Summary],
    *,
    now: datetime,
    images: dict[str, list[str]] | None = None,
    language: str | None = None,
) -> str:
    """A day's papers as a Hexo post with the seed's front matter; `images` is keyed by arxiv_id.

    The headings follow `language`, by default the language of the first summary.
    """
    images = images or {}
    lb = labels_for(language or (summaries[0].language if summaries else "en"))
    topic = one_line(topic)
    description = lb.description.format(topic=topic, day=day.isoformat())
    if summaries:
        description += "  " + one_line(summaries[0].paper.title)
    cover = next((imgs[0] for s in summaries if (imgs := images.get(s.paper.arxiv_id))), "")
    front = [
        "---",
        f"title: {yaml_value(topic)}",
        f"date: {now:%Y-%m-%d %H:%M:%S}",
        "author: paperbot",
        f"cover: {yaml_value(cover) if cover else ''}".rstrip(),
        "categories: Paper",
        "tags:",
        f"    - {yaml_value(topic)}",
        f"description: {yaml_value(description)}",
        f"keywords: {yaml_value(topic)}",
        "toc:",
        "toc_number: false",
        "toc_style_simple: true",
        "copyright:",
        "copyright_author:",
        "copyright_author_href:",
        "copyright_url:",
        "copyright_info:",
        "mathjax: true",
        "katex:",
        "aplayer:",
        "highlight_shrink:",
        "aside:",
        "---",
    ]
    parts = ["\n".join(front)]
    if summaries:
        parts.append(_notice_block(lb, [s.generated_by for s in summaries]))
    parts.append(f"# {lb.update.format(day=day.isoformat())}")
    if not summaries:
        parts.append(md(lb.no_papers.format(topic=topic)))
    for s in summaries:
        parts.append(render_paper_markdown(s, images.get(s.paper.arxiv_id)).rstrip("\n"))
    return "\n\n\n".join(parts) + "\n"
