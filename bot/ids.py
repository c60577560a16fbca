"""arXiv identifiers in every form a user types them (pure functions)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# ASCII digits only: `\d` would also take other scripts' digits, which arXiv ids never have.
# New-style ids since 2007-04: YYMM.NNNN (to 2014) or YYMM.NNNNN.
_NEW = r"(?P<new>[0-9]{4}\.[0-9]{4,5})"
# Old-style: archive(.SUBJ)?/YYMMNNN, e.g. hep-th/9901001, math.AP/0301001.
_OLD = r"(?P<old>[a-z][a-z\-]*(?:\.[A-Z]{2})?/[0-9]{7})"
_VERSION = r"(?:v(?P<version>[0-9]{1,4}))?"
_BARE = re.compile(rf"^(?:{_NEW}|{_OLD}){_VERSION}$")
# Only the scheme and host are case-insensitive: archive names are lower-case ids.
_URL = re.compile(
    rf"^(?i:https?://)?(?i:www\.|export\.)?(?i:arxiv\.org)/(?:abs|pdf|html)/(?:{_NEW}|{_OLD}){_VERSION}(?:\.pdf)?/?(?:[?#].*)?$"
)

ACCEPTED_FORMS = (
    "2405.01872, 2405.01872v2, arXiv:2405.01872, https://arxiv.org/abs/2405.01872, "
    "https://arxiv.org/pdf/2405.01872 or hep-th/9901001"
)


class BadArxivId(ValueError):
    """The text is not an arXiv identifier in any accepted form."""

    def __init__(self, text: str) -> None:
        shown = text if len(text) <= 60 else text[:57] + "..."
        super().__init__(f"{shown!r} is not an arXiv id. Accepted forms: {ACCEPTED_FORMS}")
        self.text = text


@dataclass(frozen=True, slots=True)
class ArxivId:
    base: str
    version: int | None = None

    def __str__(self) -> str:
        return self.versioned

    @property
    def versioned(self) -> str:
        return f"{self.base}v{self.version}" if self.version else self.base


def parse_arxiv_id(text: str) -> ArxivId:
    """Normalize any accepted form to (base id, version or None); raise BadArxivId otherwise."""
    s = text.strip().strip("<>").strip()
    if s.lower().startswith("arxiv:"):
        s = s[6:].strip()
    m = _BARE.match(s) or _URL.match(s)
    if not m:
        raise BadArxivId(text)
    base = m.group("new") or m.group("old")
    if m.group("new"):
        # Four-digit numbers ended with 1412: "2405.1872" is a mistyped id, not an unknown one.
        yymm, number = base.split(".")
        if len(number) == 4 and yymm >= "1501":
            raise BadArxivId(text)
    version = int(m.group("version")) if m.group("version") else None
    if version == 0:
        raise BadArxivId(text)
    return ArxivId(base, version)


def split_entry_id(entry_id: str) -> ArxivId:
    """'http://arxiv.org/abs/2405.01872v1' -> ArxivId('2405.01872', 1)."""
    return parse_arxiv_id(entry_id.split("/abs/")[-1])
