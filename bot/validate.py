"""Every chat-command argument, checked before it reaches the core (pure functions).

Each function takes the text a user typed and returns a clean value, or raises `BadInput`
whose message says what was wrong and shows an example that works. The Service turns
`BadInput` into its `UserError`, so no user input can end in "something went wrong".

What is cleaned everywhere: zero-width characters, bidirectional controls (RTL marks and
overrides) and other invisible format characters are removed, since they only hide what an
argument says (`ti:diff<U+200B>usion` would never match). Numbers are ASCII digits only:
Python's `int()` reads `٣` as 3 but `²` not at all, and a topic id or a time in digits the
user cannot see as the same number is more confusing than a clear refusal.

Limits (chosen to sit well above real use and far below what hurts):
query 500 characters, 10 nested parentheses; paper id 300 characters; setting value 100
characters; question 1,000 characters; 30 topic ids in one /unsubscribe.
"""

from __future__ import annotations

import re
import unicodedata

MAX_QUERY_CHARS = 500
MAX_QUERY_NESTING = 10
MAX_ID_CHARS = 300
MAX_VALUE_CHARS = 100
MAX_QUESTION_CHARS = 1000
MAX_TOPIC_IDS = 30
MAX_TOPIC_ID = 10**9  # larger numbers are no topic id, only a way to make the reply long

# Zero-width and bidi controls: U+200B..U+200F, U+202A..U+202E, U+2060..U+2064, U+2066..U+2069,
# U+061C (Arabic letter mark), U+FEFF (BOM), U+180E (Mongolian vowel separator).
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\u061c\ufeff\u180e]")
_ASCII_NUMBER = re.compile(r"[0-9]+")
# Characters no arXiv search uses: markup, statement separators, brackets of other languages.
_NOT_IN_QUERIES = frozenset("<>{}[]\\|;=`")


class BadInput(ValueError):
    """Input that cannot be used; the message is meant for the user as it is."""


def clean(text: str) -> str:
    """`text` without invisible characters, other control characters turned into spaces, trimmed.

    Line breaks and tabs become spaces too: no argument of ours spans lines.
    """
    text = _INVISIBLE.sub("", text)
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)
    return text.strip()


def shown(text: str, limit: int = 40) -> str:
    """A user's text quoted back in an error, short enough to read."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def has_foreign_digits(text: str) -> bool:
    """Whether `text` holds digits other than 0-9 (`²`, `٣`, `３`): Python calls them digits, we do not."""
    return any(ch.isdigit() and not ("0" <= ch <= "9") for ch in text)


def _no_foreign_digits(text: str, example: str) -> None:
    if has_foreign_digits(text):
        raise BadInput(f"Please write numbers with the digits 0-9: {shown(text)} has others. Example: {example}")


def number(text: str, lo: int, hi: int, what: str, example: str) -> int:
    """A whole number from `lo` to `hi` written in ASCII digits."""
    s = clean(text)
    _no_foreign_digits(s, example)
    if not _ASCII_NUMBER.fullmatch(s) or len(s) > len(str(hi)) + 2 or not lo <= int(s) <= hi:
        raise BadInput(f"{what} takes a whole number from {lo} to {hi}, not {shown(s)}. Example: {example}")
    return int(s)


def query(text: str) -> str:
    """A topic query's text, ready for the query parser: cleaned, within the length and nesting limits.

    The parser has limits of its own; these come first so that the message is about the query as
    typed (and 1,000 nested parentheses never reach a recursive parser).
    """
    s = clean(text)
    if not s:
        raise BadInput("Give a query, e.g. /subscribe cat:cs.CV AND ti:diffusion")
    if len(s) > MAX_QUERY_CHARS:
        raise BadInput(
            f"A query can be at most {MAX_QUERY_CHARS} characters; this one has {len(s):,}. "
            "Split it into several topics, e.g. /subscribe cat:cs.CV AND ti:diffusion"
        )
    _no_foreign_digits(s, "/subscribe ti:3D AND cat:cs.CV")
    bad = sorted({ch for ch in s if ch in _NOT_IN_QUERIES})
    if bad:
        raise BadInput(
            f"A query cannot contain {' '.join(bad)}: use words, field prefixes (ti: abs: au: cat: all:), "
            'AND, OR, ANDNOT, parentheses and "quoted phrases". Example: /subscribe cat:cs.CV AND ti:diffusion'
        )
    depth = deepest = 0
    quoted = False
    for ch in s:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif not quoted and ch == ")":
            depth -= 1
    if deepest > MAX_QUERY_NESTING:
        raise BadInput(
            f"A query can nest parentheses at most {MAX_QUERY_NESTING} deep; this one goes {deepest} deep. "
            'Example: /subscribe ti:(diffusion OR "score matching") AND cat:cs.LG'
        )
    return s


PAPER_ID_EXAMPLE = "/summary 2405.01872 or /summary https://arxiv.org/abs/2405.01872"


def paper_id(text: str, example: str = PAPER_ID_EXAMPLE) -> str:
    """A paper id's text for `bot.ids.parse_arxiv_id`: cleaned, short, ASCII digits, no paths.
    `example` is the command that works, as the user's own command (/summary, /ask) shows it."""
    s = clean(text)
    if not s:
        raise BadInput(f"Give a paper id, e.g. {example}")
    if len(s) > MAX_ID_CHARS:
        raise BadInput(f"That is {len(s):,} characters, far too long for an arXiv id. Example: {example}")
    if ".." in s.replace("...", "") or "\\" in s:
        raise BadInput(f"{shown(s)} is not an arXiv id. Example: {example}")
    _no_foreign_digits(s, example)
    return s


def topic_ids(text: str) -> list[int] | None:
    """`3`, `#3`, `3 5`, `3,5`: the topic ids; None when the text is not a list of ids (a query, `all`)."""
    parts = clean(text).replace(",", " ").split()
    if not parts or not all(p.lstrip("#").isdigit() for p in parts):
        return None
    example = "/unsubscribe 3 or /unsubscribe 3 5 (ids from /topics)"
    _no_foreign_digits(" ".join(parts), example)
    if len(parts) > MAX_TOPIC_IDS:
        raise BadInput(f"At most {MAX_TOPIC_IDS} topic ids at once; use /unsubscribe all to remove every topic.")
    ids = []
    for p in parts:
        digits = p.lstrip("#")
        if len(digits) > 10 or int(digits) > MAX_TOPIC_ID:
            cut = digits[:12] + ("…" if len(digits) > 12 else "")
            raise BadInput(f"There is no topic #{cut}; see /topics for the ids. Example: {example}")
        ids.append(int(digits))
    return ids


def language(text: str) -> str:
    """A language as typed, for `normalize_language`: a setting value without digits of other scripts
    (`²` counts as a letter to Python's regular expressions)."""
    s = setting_value(text, "/settings language zh")
    _no_foreign_digits(s, "/settings language zh")
    return s


def setting_value(text: str, example: str) -> str:
    """A setting's value: cleaned, not empty, not absurdly long."""
    s = clean(text)
    if not s:
        raise BadInput(f"Give a value, e.g. {example}")
    if len(s) > MAX_VALUE_CHARS:
        raise BadInput(f"That value is {len(s):,} characters long; settings are short. Example: {example}")
    return s


def question(text: str) -> str:
    """A question about a paper (/ask): cleaned, not empty, at most MAX_QUESTION_CHARS."""
    s = clean(text)
    example = "/ask 2405.01872 Which datasets do they evaluate on?"
    if not s:
        raise BadInput(f"Ask a question about the paper, e.g. {example}")
    if len(s) > MAX_QUESTION_CHARS:
        raise BadInput(
            f"A question can be at most {MAX_QUESTION_CHARS:,} characters; this one has {len(s):,}. "
            f"Ask something shorter, e.g. {example}"
        )
    return s
