"""Is a summary's claim in the paper? Quotes found by fuzzy matching, numbers found by value.

Pure functions over text: the paper's text is its title, abstract and the text the bot extracted
from its PDF (pages separated by "\\f", see `bot.pdf.PAGE_BREAK`), the same text the summarizer
was given. Nothing here knows an LLM; `ground` fills a SummaryContent's `evidence` and
`unsupported_numbers` from the quotes its summarizer proposed. The threshold and the measured
results that justify it are in docs/grounding.md.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation

from rapidfuzz import fuzz
from rapidfuzz.distance import ScoreAlignment

from bot.models import Evidence, Paper, SummaryContent

# A quote counts as found when some stretch of the paper's normalised text matches it with a
# partial_ratio of at least this (0-100). Verbatim quotes through PDF extraction score 96-100 on
# the fixture papers; paraphrases and passages of another paper score below 80 (docs/grounding.md).
MATCH_THRESHOLD = 90.0
# Shorter quotes match somewhere in any paper ("we propose a"); they prove nothing.
MIN_QUOTE_WORDS = 5
# Bounds on the fuzzy search (see `_align`): a longer quote is found only verbatim.
ANCHOR_CHARS = 200
MAX_FUZZY_CHARS = 10_000
PAGE_BREAK = "\f"
# Kana, CJK ideographs and Hangul: scripts written without spaces between words.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"

_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"), "-")
_QUOTES = dict.fromkeys(map(ord, "\u2018\u2019\u201a\u201b\u2032\u00b4`"), "'") | dict.fromkeys(
    map(ord, "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb"), '"'
)
_SOFT = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff]")
_LINE_HYPHEN = re.compile(r"(\w)-\s*\n\s*(\w)")
_WORD_HYPHEN = re.compile(r"(?<=[^\W\d_])-(?=[^\W\d_])")  # "self-supervised" ~ "selfsupervised"
_NOISE = re.compile(r"[^\w%.,;:!?'\"()\[\]/+=<>-]+")


def normalize(text: str) -> str:
    """Text as the matcher compares it: NFKC (ligatures "ﬁ" -> "fi"), words mended across line
    ends, hyphens inside words dropped, one kind of quote and dash, lower case, single spaces."""
    text = _SOFT.sub("", unicodedata.normalize("NFKC", text))
    text = text.translate(_DASHES).translate(_QUOTES)
    text = _LINE_HYPHEN.sub(r"\1\2", text)
    text = _WORD_HYPHEN.sub("", text)
    text = _NOISE.sub(" ", text.casefold())
    # PDF extraction puts spaces before punctuation ("word , word") that quotes never have.
    text = re.sub(r"\s+([,.;:!?)\]%])", r"\1", text)
    return " ".join(text.split())


@dataclass(frozen=True, slots=True)
class PaperText:
    """The paper's text, normalised once for every quote checked against it.

    `joined` is the title and abstract, then each PDF page, normalised and joined by single
    spaces (a quote may run across a page break); `starts[i]` is where part i begins in it and
    `pages[i]` its PDF page (None for the title and abstract).
    """

    joined: str
    starts: tuple[int, ...]
    pages: tuple[int | None, ...]
    raw: str  # all of it, un-normalised, for the numbers check

    @classmethod
    def of(cls, paper: Paper, full_text: str | None) -> PaperText:
        head = f"{paper.title}\n{paper.abstract}"
        parts: list[tuple[int | None, str]] = [(None, normalize(head))]
        pdf_pages = full_text.split(PAGE_BREAK) if full_text and full_text.strip() else []
        parts += [(n, normalize(t)) for n, t in enumerate(pdf_pages, 1) if t.strip()]
        starts, offset = [], 0
        for _, text in parts:
            starts.append(offset)
            offset += len(text) + 1
        joined = " ".join(text for _, text in parts)
        return cls(joined, tuple(starts), tuple(p for p, _ in parts), head + "\n" + "\n".join(pdf_pages))

    @property
    def has_pdf_text(self) -> bool:
        return len(self.pages) > 1

    def page_at(self, index: int) -> int | None:
        """The PDF page of the character at `index` of `joined` (None: the title and abstract)."""
        return self.pages[bisect_right(self.starts, index) - 1]


@dataclass(frozen=True, slots=True)
class QuoteMatch:
    score: float  # best partial_ratio, 0-100
    page: int | None  # the PDF page where the match starts; None for the abstract or no match
    found: bool


def find_quote(quote: str, text: PaperText, threshold: float = MATCH_THRESHOLD) -> QuoteMatch:
    """Where `quote` is in the paper: exact after normalisation, else the best fuzzy match.

    A quote shorter than MIN_QUOTE_WORDS words is never `found`; its score is still reported.
    """
    needle = normalize(quote).strip(" .\"'")
    if not needle or not text.joined:
        return QuoteMatch(0.0, None, False)
    long_enough = _word_count(needle) >= MIN_QUOTE_WORDS
    at = text.joined.find(needle)
    if at >= 0:
        return QuoteMatch(100.0, text.page_at(at), long_enough)
    if len(needle) > MAX_FUZZY_CHARS:
        return QuoteMatch(0.0, None, False)  # not a passage of 1 to 3 sentences; only verbatim counts
    m = _align(needle, text.joined)
    if m is None:
        return QuoteMatch(0.0, None, False)
    found = long_enough and m.score >= threshold
    return QuoteMatch(m.score, text.page_at(m.dest_start) if found else None, found)


_CJK_CHAR = re.compile(f"[{_CJK}]")


def _word_count(text: str) -> int:
    """Words as MIN_QUOTE_WORDS counts them: separated by spaces, and two CJK characters (which
    are written without spaces; a Chinese word is one to three characters) as one word."""
    cjk = len(_CJK_CHAR.findall(text))
    return len(_CJK_CHAR.sub("", text).split()) + cjk // 2


def _align(needle: str, haystack: str) -> ScoreAlignment | None:
    """The best alignment of `needle` with a stretch of `haystack` as long as it, scored 0-100.

    partial_ratio slides the needle along the text, which costs about len(needle)² x len(haystack)
    / 64 for needles over 64 characters, and more when nothing matches (a made-up 10,000-character
    quote against a 500 KB text took 30 s). A quote over 2 x ANCHOR_CHARS is anchored by its first
    ANCHOR_CHARS instead, and the stretch of text of its length where the anchor lands is compared
    with all of it by `ratio` (one Indel distance, linear in the text it reads).
    """
    if len(needle) <= 2 * ANCHOR_CHARS:
        return fuzz.partial_ratio_alignment(needle, haystack)
    cut = needle.rfind(" ", 0, ANCHOR_CHARS)
    anchor = fuzz.partial_ratio_alignment(needle[: cut if cut > 0 else ANCHOR_CHARS], haystack)
    if anchor is None:
        return None
    start = anchor.dest_start
    window = haystack[start : start + len(needle)]
    # A text that ends mid-quote gives a shorter window, which `ratio` scores down as it should.
    return ScoreAlignment(fuzz.ratio(needle, window), 0, len(needle), start, start + len(window))


def verify_quotes(quotes: Sequence[str | None], text: PaperText) -> list[Evidence]:
    """One Evidence per quote, in order; a missing (None or empty) quote is unverified."""
    out = []
    for q in quotes:
        q = " ".join((q or "").split())
        if not q:
            out.append(Evidence(None, False))
            continue
        m = find_quote(q, text)
        out.append(Evidence(q, m.found, m.page if m.found else None))
    return out


# --- numbers ----------------------------------------------------------------------------------

# A number as written: optional minus, digits with thousands separators or a decimal part (or a
# bare ".5"), an optional scale suffix (k, M, B; 万 and 亿 in Chinese) and an optional percent or
# times sign ("×", "x", "倍"); a range is two of them joined by a dash or "to" written as "-", "–",
# "—", "~".
_NUM = r"(?:\d{1,3}(?:,\d{3})+(?![\d])|\d+(?:\.\d+)?|\.\d+)"
_SCALE = r"(?:[kKMB](?![A-Za-z])|[万萬亿億])"
_UNIT = r"(?:\s?%|\s?[×x](?![A-Za-z])|倍)"
# Chinese, Japanese and Korean text writes a number right against the characters around it
# ("准确率为97.3%"), and every CJK character is a word character to `re`: only a Latin (Greek,
# Cyrillic...) letter or a digit glued in front makes a name such as "GPT4" instead of a number.
_NUMBER = re.compile(
    rf"(?<![^\W{_CJK}]|\.)(?P<sign>[-−–]?)(?P<num>{_NUM})(?:\s?(?P<scale>{_SCALE}))?"
    rf"(?P<unit>{_UNIT})?"
    rf"(?:\s?(?P<dash>[-–—~])\s?(?P<num2>{_NUM})(?:\s?(?P<scale2>{_SCALE}))?(?P<unit2>{_UNIT})?)?"
)
# In the paper's text every run of digits counts, however it is glued to letters ("ResNet-50",
# "F1", "Table 3a"): a summary that writes "ResNet-50" then finds its 50.
_TEXT_NUMBER = re.compile(rf"(?P<num>{_NUM})(?:\s?(?P<scale>[kKMB](?![a-z])|[万萬亿億]))?")
_SCALES = {"k": 1000, "K": 1000, "M": 1_000_000, "B": 1_000_000_000, "万": 10_000, "萬": 10_000,
           "亿": 100_000_000, "億": 100_000_000}
_DIGIT = re.compile(r"\d")


def _values(num: str, scale: str | None) -> set[Decimal]:
    """The values a number written as `num` with `scale` may stand for: itself, and scaled."""
    try:
        value = Decimal(num.replace(",", ""))
    except InvalidOperation:
        return set()
    out = {value.normalize()}
    if scale:
        out.add((value * _SCALES[scale]).normalize())
    return out


# Scientific notation is one number: "1e-4", "2×10^-5", "10^{6}" (and "10⁻⁴", made "10^-4" first).
_DEC = r"\d+(?:\.\d+)?"
_SUPERSCRIPTS = "⁺⁻⁰¹²³⁴⁵⁶⁷⁸⁹"
_SCI = re.compile(
    rf"(?<![^\W{_CJK}]|\.)(?:(?:(?P<m>{_DEC})\s?[×x·*]\s?)?10\s?\^\s?\{{?\s?(?P<e>[-−+]?\d{{1,3}})\s?\}}?"
    rf"|(?:(?P<m3>{_DEC})\s?[×x·*]\s?)?10(?P<sup>[⁺⁻]?[⁰¹²³⁴⁵⁶⁷⁸⁹]{{1,3}})"
    rf"|(?P<m2>{_DEC})[eE](?P<e2>[-−+]?\d{{1,3}})(?![\w.]))"
)
# In a PDF's text a superscript exponent lands on the line: 10^{-4} is "10−4", 1.5 × 10^6 is "1.5 × 106".
_LOST_NEGATIVE = re.compile(rf"(?:(?P<m>{_DEC})\s?[×x·]\s?)?(?<!\d)10\s?[-−](?P<e>\d{{1,2}})(?!\d)")
_LOST_POSITIVE = re.compile(rf"(?P<m>{_DEC})\s?[×x·]\s?10(?P<e>\d{{1,2}})(?!\d)")
_FROM_SUPERSCRIPT = str.maketrans("⁺⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "+-0123456789")


def _sci_value(mantissa: str | None, exponent: str, sign: str = "") -> Decimal:
    e = int(sign + exponent.replace("−", "-").lstrip("+"))
    return Decimal(mantissa or "1").scaleb(e).normalize()


def _sci_match_value(m: re.Match[str]) -> Decimal:
    if m["sup"]:
        return _sci_value(m["m3"], m["sup"].translate(_FROM_SUPERSCRIPT))
    return _sci_value(m["m"], m["e"]) if m["e"] else _sci_value(m["m2"], m["e2"])


def paper_numbers(text: str) -> set[Decimal]:
    """Every number in the paper's text, by value (signs dropped, "1.5k" also as 1500, "1e-4" and
    "10−4", a superscript that extraction flattened, also as 0.0001)."""
    # A thousands separator is sometimes a thin space in print: "12 345" (before NFKC makes it a space).
    text = re.sub(r"(?<=\d)[\u2009\u202f](?=\d{3}\b)", "", text)
    text = unicodedata.normalize("NFKC", text)
    found: set[Decimal] = set()
    for m in _TEXT_NUMBER.finditer(text):
        found |= _values(m["num"], m["scale"])
        if "," in m["num"]:  # "1,2" in a list is two numbers, not one thousand and two
            for part in m["num"].split(","):
                found |= _values(part, None)
    for m in _SCI.finditer(text):
        found.add(_sci_match_value(m))
    for m in _LOST_NEGATIVE.finditer(text):
        found.add(_sci_value(m["m"], m["e"], "-"))
    for m in _LOST_POSITIVE.finditer(text):
        found.add(_sci_value(m["m"], m["e"]))
    return found


def _nfkc_keeping_places(text: str) -> tuple[str, list[int]]:
    """`text` under NFKC ("９７.３％" -> "97.3%"), character by character, and for each place of the
    result the place in `text` it came from (one more at the end), so a match can be reported as
    it was written. Superscript digits and signs stay as they are: "10⁻⁴" must not become "10−4"."""
    out: list[str] = []
    places: list[int] = []
    for i, ch in enumerate(text):
        n = ch if ch in _SUPERSCRIPTS else unicodedata.normalize("NFKC", ch)
        out.append(n)
        places.extend([i] * len(n))
    places.append(len(text))
    return "".join(out), places


def numbers_in(text: str) -> list[tuple[str, list[set[Decimal]]]]:
    """The numbers written with digits in a summary's text: (as written there, the values of each end).

    A range "10-20" is one item with two ends; "97.3%" is one end with the value 97.3; "1e-4",
    "2×10^-5" and "10⁻⁴" are one number each. Full-width forms are read as their ASCII ones.
    """
    norm, places = _nfkc_keeping_places(text)

    def written(m: re.Match[str]) -> str:
        start, end = m.span()
        while end > start and norm[end - 1].isspace():
            end -= 1
        while start < end and norm[start].isspace():
            start += 1
        return text[places[start] : places[end - 1] + 1]

    found: list[tuple[int, str, list[set[Decimal]]]] = []
    for m in _SCI.finditer(norm):
        found.append((m.start(), written(m), [{_sci_match_value(m)}]))
    # The rest, with the scientific ones blanked out so that their digits are not numbers again.
    rest = _SCI.sub(lambda m: " " * len(m.group(0)), norm)
    for m in _NUMBER.finditer(rest):
        ends = [_values(m["num"], m["scale"])]
        if m["num2"]:
            ends.append(_values(m["num2"], m["scale2"]))
        if "%" in (m["unit2"] or m["unit"] or ""):
            # A table's fraction is the summary's percentage: "95.1%" is also 0.951.
            ends = [end | {(v / 100).normalize() for v in end} for end in ends]
        found.append((m.start(), written(m), ends))
    return [(w, ends) for _, w, ends in sorted(found, key=lambda f: f[0])]


def unsupported_numbers(texts: Iterable[str], paper_text: str) -> list[str]:
    """The numbers in `texts` (as written there, each once) that are nowhere in `paper_text`.

    Equivalent forms count as the same number: "12,345" = "12345", "1.5k" = "1,500", "97.3%" =
    "97.3" (tables drop the sign), "−0.5" = "-0.5" = "0.5", "3×" = "3x" = "3", and a range is
    found when both its ends are.
    """
    known = paper_numbers(paper_text)
    out: list[str] = []
    for text in texts:
        for written, ends in numbers_in(text):
            if not _DIGIT.search(written):
                continue
            if all(end & known for end in ends):
                continue
            if written not in out:
                out.append(written)
    return out


# --- a summary --------------------------------------------------------------------------------


def ground(content: SummaryContent, paper: Paper, full_text: str | None) -> SummaryContent:
    """`content` with `evidence` (one per key takeaway, checked) and `unsupported_numbers` filled.

    The quotes are those the summarizer proposed in `content.evidence` (aligned with the
    takeaways; missing ones count as not found).
    """
    text = PaperText.of(paper, full_text)
    proposed = [e.quote for e in (content.evidence or [])]
    proposed += [None] * (len(content.key_takeaways) - len(proposed))
    evidence = verify_quotes(proposed[: len(content.key_takeaways)], text)
    numbers = unsupported_numbers([content.summary, *content.key_takeaways, content.results], text.raw)
    return replace(content, evidence=evidence, unsupported_numbers=numbers)
