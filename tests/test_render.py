"""Renderers: escaping, platform limits, lossless splitting, the seed's Markdown shape."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from html.parser import HTMLParser

import discord
import pytest

from bot.models import Paper, Summary, SummaryContent
from bot.render import discord as dc
from bot.render import markdown as mdr
from bot.render import telegram as tg
from bot.render.card import build_card, short_authors, utf16_len
from bot.render.labels import EN, ZH, labels_for

HOSTILE_TITLE = "Defect <script>alert(1)</script> & <b>Sample</b> Generation"
ALLOWED_TAGS = {"b", "i", "a", "code", "pre", "blockquote"}
SEED_FRONT_MATTER_KEYS = [
    "title", "date", "author", "cover", "categories", "tags", "description", "keywords", "toc",
    "toc_number", "toc_style_simple", "copyright", "copyright_author", "copyright_author_href",
    "copyright_url", "copyright_info", "mathjax", "katex", "aplayer", "highlight_shrink", "aside",
]


def sentences(n: int, word: str = "Sentence") -> str:
    return " ".join(f"{word} number {i} says something about diffusion & defects." for i in range(n))


def make_summary(
    *,
    title: str = HOSTILE_TITLE,
    language: str = "en",
    generated_by: str = "gemini:gemini-2.5-flash",
    full_text_used: bool = True,
    authors: list[str] | None = None,
    comment: str | None = "Accepted by CVPR 2024 Workshop",
    **content: object,
) -> Summary:
    paper = Paper(
        arxiv_id="2405.01872",
        version=1,
        title=title,
        authors=authors if authors is not None else ["Yichun Tai", "Kun Yang", "Tao Peng", "Zhenzhen Huang", "Zhijiang Zhang"],
        abstract="The task of steel surface defect recognition <script>x</script> is an industrial problem.\nIt matters.",
        categories=["cs.CV"],
        published=datetime(2024, 5, 3, tzinfo=UTC),
        updated=datetime(2024, 5, 3, tzinfo=UTC),
        abs_url="http://arxiv.org/abs/2405.01872v1",
        pdf_url="http://arxiv.org/pdf/2405.01872v1",
        comment=comment,
    )
    fields: dict[str, object] = dict(
        title_translated="Defect image sample generation",
        summary="StableSDG transfers Stable Diffusion to generate steel defect images & improves recognition.",
        key_takeaways=["Uses <Stable Diffusion> priors.", "Aligns distributions & tokens.", "Image-oriented generation."],
        keywords=["diffusion", "defect recognition"],
        background="Steel surface defect recognition lacks data.",
        prior_work="SDGAN and Defect-GAN train from scratch & overfit.",
        method=["Adapt the diffusion model's token embeddings.", "Fine-tune with low-rank adaptation.", "Generate from images."],
        results="State-of-the-art sample quality on NEU.",
        conclusion="StableSDG addresses data insufficiency.",
        affiliations=["Shanghai University"],
        code_url=None,
    )
    fields.update(content)
    return Summary(paper, SummaryContent(**fields), language, generated_by, full_text_used=full_text_used)  # type: ignore[arg-type]


def chinese_summary(**kw: object) -> Summary:
    return make_summary(
        language="zh",
        title_translated="缺陷图像样本生成与扩散",
        summary="钢材表面缺陷生成模型StableSDG通过迁移Stable Diffusion模型生成高精度合成图像。",
        key_takeaways=["利用Stable Diffusion模型生成钢材表面缺陷图像。", "弥合分布差异。", "采用图像引导生成。"],
        keywords=["扩散模型", "缺陷识别"],
        background="钢表面缺陷识别是工业界具有巨大产业价值的一项任务。",
        prior_work="现有的方法包括：SDGAN、Defect-GAN。",
        method=["使用Stable Diffusion作为扩散先验。", "提出StableSDG方法。"],
        results="在NEU数据集上达到最先进水平。",
        conclusion="本文有效解决了数据不足的问题。",
        affiliations=["上海大学"],
        **kw,
    )


def extractive_summary(language: str = "en") -> Summary:
    return make_summary(language=language, generated_by="extractive", full_text_used=False)


def long_breakdown_summary() -> Summary:
    """A breakdown over 10000 characters whose paragraphs each fit in a Telegram message."""
    return make_summary(
        background=sentences(30, "Background"),
        prior_work=sentences(30, "Prior"),
        method=[sentences(6, f"Step{i}") for i in range(8)],
        results=sentences(30, "Results"),
        conclusion=sentences(30, "Conclusion"),
    )


class TelegramHTML(HTMLParser):
    """Checks Telegram's rules: only its tags, properly nested and closed; collects the visible text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()
        assert not self.stack, f"unclosed tags {self.stack} in {html[-200:]!r}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in ALLOWED_TAGS, f"tag <{tag}> is not allowed by Telegram"
        if tag == "a":
            assert dict(attrs).get("href"), "a link without href"
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def content(self) -> str:
        return "".join(self.text)


def text_of(html: str) -> str:
    return TelegramHTML(html).content


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def assert_lossless_html(original: str, pieces: list[str], limit: int) -> None:
    for piece in pieces:
        assert utf16_len(piece) <= limit
        TelegramHTML(piece)  # balanced, allowed tags only
    assert squash("".join(text_of(p) for p in pieces)) == squash(text_of(original))


def assert_cuts_at_line_ends(original: str, pieces: list[str]) -> None:
    """Each piece ends where a line of the original ends: no paragraph was cut that could fit whole."""
    start = 0
    for piece in pieces:
        at = original.index(piece.strip(), start)
        start = at + len(piece.strip())
        assert start == len(original) or original[start] == "\n", original[start - 40 : start + 20]
        assert not piece.rstrip().endswith((":", "：")), "a heading was left at the end of a message"


# --- labels and the card -------------------------------------------------------------------


def test_labels_follow_the_language_with_english_as_fallback() -> None:
    assert labels_for("zh") is ZH and labels_for("Chinese") is ZH and labels_for("zh-CN") is ZH
    assert labels_for("en") is EN and labels_for("German") is EN
    assert (ZH.abstract_summary, ZH.method_steps, ZH.conclusion) == ("摘要", "方法", "结论")
    assert EN.extractive == "Extractive summary (no LLM; sentences taken from the abstract, not translated)"


def test_short_authors() -> None:
    assert short_authors(["A", "B", "C", "D"]) == "A, B, C, D"
    assert short_authors(["A", "B", "C", "D", "E"]) == "A, B, C et al."
    assert short_authors(["A", "B", "C"], max=2) == "A et al."
    assert short_authors(["A", "B"], max=1) == "A et al."
    assert short_authors([]) == ""


def test_card_has_the_eight_sections_in_order_and_the_provenance() -> None:
    from bot.models import Evidence

    # Sources (9) are there for a summary whose quotes were checked.
    card = build_card(make_summary(evidence=[Evidence("A passage of the paper itself.", True, 2)] * 3))
    assert [(s.number, s.heading) for s in card.sections] == [
        (1, "Title"), (2, "Authors"), (3, "Affiliation"), (4, "Keywords"),
        (5, "Links"), (6, "Summary"), (7, "Method steps"), (8, "Conclusion"), (9, "Sources"),
    ]
    assert [i.label for i in card.sections[5].items] == ["Background", "Prior work and its problems", "Method", "Results"]
    assert [i.text for i in card.sections[6].items][1] == "Fine-tune with low-rank adaptation."
    assert "Code: None" in card.sections[4].text and "http://arxiv.org/abs/2405.01872v1" in card.sections[4].text
    assert card.provenance == "Generated by: gemini:gemini-2.5-flash · from the full text"
    assert "gemini-2.5-flash" in card.notice and "may contain errors" in card.notice
    assert build_card(make_summary(title_translated=HOSTILE_TITLE.upper())).title_translated is None
    assert "from the abstract only" in build_card(extractive_summary()).provenance


# --- Telegram ----------------------------------------------------------------------------------


def test_card_html_escapes_every_dynamic_string() -> None:
    html = tg.card_html(make_summary(authors=["<i>Eve</i>", "Bob & Co"]))
    assert "<script>" not in html and "<b>Sample" not in html and "<i>Eve" not in html
    assert "&lt;script&gt;" in html and "&amp;" in html
    text = text_of(html)
    assert HOSTILE_TITLE in text and "<i>Eve</i>, Bob & Co" in text
    assert "Uses <Stable Diffusion> priors." in text and "Aligns distributions & tokens." in text
    assert html.startswith('<b><a href="http://arxiv.org/abs/2405.01872v1">')
    assert "Accepted by CVPR 2024 Workshop" in text and "Generated by: gemini:gemini-2.5-flash" in text


def test_card_html_drops_takeaways_from_the_end_when_too_long() -> None:
    takeaways = [f"T{i} " + "x & y " * 150 for i in range(8)]
    html = tg.card_html(make_summary(key_takeaways=takeaways))
    assert utf16_len(html) <= 4096
    text = text_of(html)
    kept = [t for t in takeaways if t.strip() in text]
    assert 0 < len(kept) < 8 and kept == takeaways[: len(kept)]
    assert "Generated by" in text  # the provenance survives the trimming


def test_caption_fits_1024_with_as_many_takeaways_as_fit() -> None:
    short = tg.caption_html(make_summary())
    assert all(t in text_of(short) for t in ["Uses <Stable Diffusion> priors.", "Image-oriented generation."])
    takeaways = [f"Takeaway {i}: " + "a & b " * 20 for i in range(8)]
    caption = tg.caption_html(make_summary(key_takeaways=takeaways))
    assert utf16_len(caption) <= 1024
    text = text_of(caption)
    assert "StableSDG transfers" in text and "Takeaway 0" in text and "Takeaway 7" not in text
    huge = tg.caption_html(make_summary(summary="Very long & odd. " * 300))
    assert utf16_len(huge) <= 1024 and HOSTILE_TITLE in text_of(huge)


def test_breakdown_over_10000_chars_splits_at_paragraphs() -> None:
    summary = long_breakdown_summary()
    whole = tg.breakdown_html(summary)
    assert len(text_of(whole)) > 10000
    messages = tg.breakdown_messages(summary)
    assert len(messages) >= 3
    assert_lossless_html(whole, messages, 4096)
    assert_cuts_at_line_ends(text_of(whole), [text_of(m) for m in messages])
    assert text_of(messages[0]).startswith("Full breakdown: " + HOSTILE_TITLE)
    joined = "\n".join(text_of(m) for m in messages)
    for heading in ["1. Title", "5. Links", "6. Summary", "(4) Results", "7. Method steps", "(8) Step7", "8. Conclusion"]:
        assert heading in joined


def test_a_paragraph_longer_than_a_message_is_split_at_sentences() -> None:
    paragraph = sentences(120)  # one line, about 7000 characters
    assert len(paragraph) > 4096 and "\n" not in paragraph
    summary = make_summary(background=paragraph)
    messages = tg.breakdown_messages(summary)
    assert_lossless_html(tg.breakdown_html(summary), messages, 4096)
    assert " ".join(text_of(m) for m in messages).split() == text_of(tg.breakdown_html(summary)).split()
    # The overlong paragraph is cut between two sentences; the heading stays with its first item.
    assert text_of(messages[1]).startswith("6. Summary:\n(1) Background: Sentence number 0 says")
    assert text_of(messages[1]).endswith("Sentence number 61 says something about diffusion & defects.")
    assert text_of(messages[2]).startswith("Sentence number 62 says")
    assert_cuts_at_line_ends(text_of(tg.breakdown_html(summary)), [text_of(m) for m in messages[2:]])


def test_split_html_closes_and_reopens_tags_at_a_cut() -> None:
    inner = sentences(200)
    html = f'<b>Bold <a href="https://x.org/?a=1&amp;b=2">{tg.escape(inner)}</a> end</b>'
    pieces = tg.split_html(html, 1000)
    assert len(pieces) > 5
    assert_lossless_html(html, pieces, 1000)
    for piece in pieces[1:-1]:
        assert piece.startswith('<b><a href="https://x.org/?a=1&amp;b=2">') and piece.endswith("</a></b>")


def test_split_html_never_breaks_an_entity_or_a_word_needlessly() -> None:
    html = "a &amp; b &lt;c&gt; " * 400
    pieces = tg.split_html(html, 50)
    assert_lossless_html(html, pieces, 50)
    for piece in pieces:
        assert re.fullmatch(r"([a-z ]|&amp;|&lt;|&gt;)+", piece), piece
    assert " ".join(text_of(p) for p in pieces).split() == text_of(html).split()


def test_split_html_hard_cuts_text_without_any_boundary() -> None:
    html = "<i>" + "x" * 10000 + "</i>"
    pieces = tg.split_html(html)
    assert len(pieces) == 3
    assert_lossless_html(html, pieces, 4096)


def test_split_html_counts_utf16_units_and_cuts_chinese_at_sentence_ends() -> None:
    emoji = "😀" * 3000  # 6000 UTF-16 units
    pieces = tg.split_html(emoji)
    assert [utf16_len(p) for p in pieces] == [4096, 1904]
    assert "".join(pieces) == emoji
    chinese = "钢表面缺陷识别是工业界具有巨大产业价值的一项任务。" * 300
    pieces = tg.split_html(chinese)
    assert len(pieces) == 2 and all(p.endswith("。") for p in pieces)
    assert "".join(pieces) == chinese


def test_chinese_breakdown_uses_chinese_headings() -> None:
    messages = tg.breakdown_messages(chinese_summary())
    text = text_of("".join(messages))
    for heading in ["1. 标题：", "缺陷图像样本生成与扩散", "3. 单位：上海大学", "6. 摘要：", "(1) 研究背景：", "7. 方法：", "8. 结论："]:
        assert heading in text


def test_digest_header_and_compact_list() -> None:
    assert tg.digest_header_html("cat:cs.CV & <x>", date(2024, 5, 6), 3) == (
        "<b>cat:cs.CV &amp; &lt;x&gt; — 2024-05-06: 3 new papers</b>"
    )
    assert tg.digest_header_html("t", date(2024, 5, 6), 1).endswith("1 new paper</b>")
    papers = []
    for i in range(300):
        p = make_summary(title=f"Paper {i} <&> " + "long title words " * 5).paper
        p.abs_url = f"http://arxiv.org/abs/2405.{i:05d}v1"
        papers.append(p)
    messages = tg.compact_list_html(papers)
    assert len(messages) > 1 and tg.compact_list_html([]) == []
    lines = []
    for message in messages:
        assert utf16_len(message) <= 4096
        lines += text_of(message).splitlines()
    assert lines[0] == "More papers today:"
    assert [line.split(" <&>")[0] for line in lines[1:]] == [f"• Paper {i}" for i in range(300)]
    assert all(line.endswith("Tao Peng et al.") for line in lines[1:])


# --- Markdown ----------------------------------------------------------------------------------


def positions(text: str, needles: list[str]) -> list[int]:
    found = [text.find(n) for n in needles]
    assert -1 not in found, [n for n, f in zip(needles, found, strict=True) if f == -1]
    return found


def test_paper_markdown_has_the_seed_sections_in_order() -> None:
    out = mdr.render_paper_markdown(make_summary(code_url="https://github.com/x/y"), ["fig 1.png", "b.png"])
    order = [
        "## Defect", "**Authors:Yichun Tai, Kun Yang, Tao Peng, Zhenzhen Huang, Zhijiang Zhang**",
        "The task of steel surface", "[PDF](http://arxiv.org/pdf/2405.01872v1) Accepted by CVPR 2024 Workshop",
        "**Summary**\nStableSDG transfers", "**Key Takeaways**\n- Uses", "- Image-oriented generation.",
        "1. **Title**: ", "2. **Authors**: ", "3. **Affiliation**: Shanghai University", "4. **Keywords**: diffusion, defect",
        "5. **Links**: Paper: http://arxiv.org/abs/2405.01872v1 · Code: https://github.com/x/y",
        "6. **Summary**:", "(1) **Background**", "(2) **Prior work and its problems**", "(3) **Method**",
        "(4) **Results**", "7. **Method steps**:", "(1) Adapt", "(3) Generate from images.", "8. **Conclusion**: StableSDG",
        "<details>\n  <summary>Figures from the paper</summary>", '<img src="fig 1.png" align="middle">', "</details>",
    ]
    assert positions(out, order) == sorted(positions(out, order))
    assert "<script>" not in out and "<b>Sample" not in out  # raw HTML in titles and abstracts is defused
    assert "<details>" not in mdr.render_paper_markdown(make_summary())


def test_summary_markdown_starts_with_the_notice() -> None:
    out = mdr.render_summary_markdown(make_summary())
    assert out.startswith(">⚠️ This text was generated automatically by gemini-2.5-flash")
    assert "never as a source for academic work" in out.split("## ")[0]
    assert "*Generated by: gemini:gemini-2.5-flash · from the full text*" in out


def front_matter(post: str) -> list[tuple[str, str]]:
    assert post.startswith("---\n")
    block = post.split("---\n")[1]
    return [tuple(line.split(":", 1)) for line in block.splitlines() if not line.startswith(" ")]  # type: ignore[misc]


def test_digest_post_front_matter_in_the_seed_order_and_safely_quoted() -> None:
    topic = "cat:cs.CV AND ti:diffusion #1"
    post = mdr.render_digest_post(
        topic, date(2024, 5, 6), [make_summary(), chinese_summary()],
        now=datetime(2024, 5, 6, 18, 26, 38), images={"2405.01872": ["img/a.png", "img/b.png"]},
    )
    fm = front_matter(post)
    assert [k for k, _ in fm] == SEED_FRONT_MATTER_KEYS
    values = {k: v.strip() for k, v in fm}
    assert json.loads(values["title"]) == topic and json.loads(values["keywords"]) == topic
    assert f"tags:\n    - {json.dumps(topic)}\n" in post
    assert values["date"] == "2024-05-06 18:26:38" and values["author"] == "paperbot"
    assert values["cover"] == "img/a.png" and values["mathjax"] == "true"
    description = json.loads(values["description"])
    assert topic in description and HOSTILE_TITLE in description
    body = post.split("---\n", 2)[2]
    order = [">⚠️ This text was generated automatically by gemini-2.5-flash", "# 2024-05-06 update",
             "## Defect", "**Authors:", "**作者：", "1. **标题**："]
    assert positions(body, order) == sorted(positions(body, order))
    assert body.count("<details>") == 2


def test_plain_front_matter_values_stay_plain() -> None:
    post = mdr.render_digest_post("Diffusion Models", date(2024, 5, 6), [], now=datetime(2024, 5, 7, 1, 2, 3))
    values = dict(front_matter(post))
    assert values["title"] == " Diffusion Models" and values["cover"] == ""
    assert "# 2024-05-06 update" in post and "No new papers matched Diffusion Models on this day." in post
    assert mdr.yaml_value("true") == '"true"' and mdr.yaml_value("- x") == '"- x"'


def test_chinese_digest_has_localized_headings() -> None:
    post = mdr.render_digest_post("扩散模型", date(2024, 5, 6), [chinese_summary()], now=datetime(2024, 5, 6, 18, 0))
    assert "# 2024-05-06 更新" in post and "点此查看论文截图" not in post
    assert "**总结**\n钢材表面" in post and "**要点**\n- 利用" in post and "8. **结论**：本文" in post
    assert "扩散模型 方向最新论文已更新" in dict(front_matter(post))["description"]


# --- Discord -------------------------------------------------------------------------------------


def test_paper_embed_respects_every_discord_limit() -> None:
    summary = make_summary(
        title="T*itle_ " * 60,
        comment="comment " * 300,
        summary="A very long summary & more. " * 200,
        key_takeaways=["takeaway " * 100 for _ in range(8)],
        authors=[f"Author {i}" for i in range(300)],
    )
    embed = dc.paper_embed(summary)
    assert utf16_len(embed["title"]) <= 256 and utf16_len(embed["description"]) <= 4096
    assert len(embed["fields"]) <= 25 and utf16_len(embed["footer"]["text"]) <= 2048
    assert all(utf16_len(f["name"]) <= 256 and utf16_len(f["value"]) <= 1024 for f in embed["fields"])
    assert dc.embed_length(embed) <= 6000
    assert len(discord.Embed.from_dict(embed)) <= 6000  # discord.py's own count agrees


def test_paper_embed_content_and_markdown_escaping() -> None:
    embed = dc.paper_embed(make_summary(title="A *bold* _claim_", code_url="https://github.com/x/y_z"))
    assert embed["title"] == r"A \*bold\* \_claim\_" and embed["url"] == "http://arxiv.org/abs/2405.01872v1"
    assert embed["description"].startswith("**Summary**\nStableSDG transfers")
    assert "- Image-oriented generation." in embed["description"]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Authors"] == "Yichun Tai, Kun Yang, Tao Peng et al."
    assert "[Code](https://github.com/x/y_z)" in fields["Links"]


def test_discord_breakdown_chunks_fit_and_lose_nothing() -> None:
    summary = long_breakdown_summary()
    chunks = dc.breakdown_chunks(summary)
    whole = dc.breakdown_text(summary)
    assert len(whole) > 10000 and len(chunks) >= 6
    assert all(utf16_len(c) <= 2000 for c in chunks)
    assert squash("".join(chunks)) == squash(whole)
    assert_cuts_at_line_ends(whole, chunks)
    pinged = dc.breakdown_text(make_summary(background="Hi @everyone and <@123456789012345678>."))
    assert "@everyone" not in pinged and "@\u200beveryone" in pinged


def test_split_text_keeps_escapes_whole() -> None:
    text = r"\*" * 3000
    chunks = dc.split_text(text)
    assert all(len(c) <= 2000 and c.startswith("\\") and not c.endswith("\\") for c in chunks)
    assert "".join(chunks) == text


# --- the extractive label is never lost ------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "zh"])
def test_extractive_label_in_every_rendering(language: str) -> None:
    summary = extractive_summary(language)
    label = labels_for(language).extractive
    renderings = {
        "card": text_of(tg.card_html(summary)),
        "caption": text_of(tg.caption_html(summary)),
        "breakdown": text_of("".join(tg.breakdown_messages(summary))),
        "paper markdown": mdr.render_paper_markdown(summary),
        "summary markdown": mdr.render_summary_markdown(summary),
        "digest": mdr.render_digest_post("x", date(2024, 5, 6), [summary], now=datetime(2024, 5, 6)),
        "embed": dc.paper_embed(summary)["footer"]["text"],
        "discord breakdown": "".join(dc.breakdown_chunks(summary)),
    }
    for name, text in renderings.items():
        assert label in text, name
    long_caption = tg.caption_html(make_summary(generated_by="extractive", summary="Long. " * 400))
    assert EN.extractive in text_of(long_caption)
    assert "generated automatically by" not in renderings["summary markdown"]
