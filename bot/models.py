"""Plain data shared by every layer: papers, summaries, chats, topics, deliveries."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any


@dataclass(slots=True)
class Paper:
    """One arXiv paper at one version, as the export API describes it."""

    arxiv_id: str  # base id, no version: "2405.01872" or "hep-th/9901001"
    version: int
    title: str
    authors: list[str]
    abstract: str
    categories: list[str]  # primary first
    published: datetime  # first version, UTC
    updated: datetime  # this version, UTC
    abs_url: str
    pdf_url: str | None = None
    comment: str | None = None
    journal_ref: str | None = None
    doi: str | None = None
    affiliations: list[str] = field(default_factory=list)

    @property
    def versioned_id(self) -> str:
        return f"{self.arxiv_id}v{self.version}"

    @property
    def primary_category(self) -> str:
        return self.categories[0] if self.categories else ""


@dataclass(frozen=True, slots=True)
class Evidence:
    """The passage of the paper a key takeaway rests on, and whether it was found there.

    `quote` is None when the summarizer gave none; `page` is the PDF page (1-based) the passage
    was found on, None when it was found in the title or abstract, or not found.
    """

    quote: str | None
    verified: bool
    page: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"quote": self.quote, "verified": self.verified, "page": self.page}


@dataclass(slots=True)
class SummaryContent:
    """What a summarizer writes about a paper, in one language."""

    title_translated: str
    summary: str  # one sentence
    key_takeaways: list[str]  # 3 to 8
    keywords: list[str]
    background: str
    prior_work: str  # prior work and its problems
    method: list[str]  # steps
    results: str
    conclusion: str
    affiliations: list[str] = field(default_factory=list)
    code_url: str | None = None
    # Grounding (bot.grounding): one Evidence per key takeaway, and the numbers of `summary`,
    # `key_takeaways` and `results` that the paper's text does not hold. None: never checked
    # (a summary stored before grounding existed), which renders as unverified.
    evidence: list[Evidence] | None = None
    unsupported_numbers: list[str] | None = None

    def evidence_for_takeaways(self) -> list[Evidence]:
        """One Evidence per key takeaway, in order; unverified where none was checked."""
        have = list(self.evidence or [])[: len(self.key_takeaways)]
        return have + [Evidence(None, False)] * (len(self.key_takeaways) - len(have))


@dataclass(frozen=True, slots=True)
class MatchReason:
    """Why a pushed paper reached a chat: the chat's topic (`#id` and query) and the words that matched.

    `terms` are the query's terms that hold for the paper, as "field:text" ("ti:diffusion",
    "cat:cs.CV"); `topic_id` is None when the topic was removed since it matched.
    """

    topic_id: int | None
    query: str
    terms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PaperText:
    """A paper's text for its summary (`text`), or None and whether to ask again later.

    `retry` is True when the text is missing for a reason that may pass (the download timed
    out, the network or arXiv failed): a summary made without it is made once more when the
    text can be had. A PDF that is unusable (encrypted, broken, a bomb) gives `retry=False`.
    """

    text: str | None
    retry: bool = False


@dataclass(slots=True)
class Summary:
    """A paper with its summary: the SPEC's `--format json` object."""

    paper: Paper
    content: SummaryContent
    language: str
    generated_by: str  # "gemini:<model>" or "extractive"
    full_text_used: bool = False
    prompt_version: str = ""
    images: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    # Not part of the SPEC's JSON: how the summary service treats the stored row.
    text_retry: bool = False  # made without the paper's text for a passing reason: made again once
    stand_in_for: str | None = None  # a fallback's: the model key that failed or was skipped

    @property
    def is_extractive(self) -> bool:
        return self.generated_by == "extractive"

    def to_json(self) -> dict[str, Any]:
        p, c = self.paper, self.content
        return {
            "arxiv_id": p.arxiv_id,
            "version": p.version,
            "title": p.title,
            "title_translated": c.title_translated,
            "authors": list(p.authors),
            "affiliations": list(c.affiliations or p.affiliations),
            "url": p.abs_url,
            "pdf_url": p.pdf_url,
            "code_url": c.code_url,
            "comment": p.comment,
            "categories": list(p.categories),
            "published": p.published.isoformat(),
            "language": self.language,
            "summary": c.summary,
            "key_takeaways": list(c.key_takeaways),
            "keywords": list(c.keywords),
            "background": c.background,
            "prior_work": c.prior_work,
            "method": list(c.method),
            "results": c.results,
            "conclusion": c.conclusion,
            "generated_by": self.generated_by,
            "full_text_used": self.full_text_used,
            "images": list(self.images),
            "evidence": [e.to_json() for e in c.evidence_for_takeaways()],
            "unsupported_numbers": list(c.unsupported_numbers or []),
        }


def evidence_from_json(items: Any) -> list[Evidence] | None:
    if not isinstance(items, list):
        return None
    return [
        Evidence(i.get("quote"), bool(i.get("verified")), i.get("page")) if isinstance(i, dict) else Evidence(None, False)
        for i in items
    ]


def content_from_dict(d: dict[str, Any]) -> SummaryContent:
    """From stored JSON; a summary stored before grounding existed loads with evidence None."""
    values = {k: d[k] for k in SummaryContent.__dataclass_fields__ if k in d}
    if "evidence" in values:
        values["evidence"] = evidence_from_json(values["evidence"])
    return SummaryContent(**values)


def content_to_dict(c: SummaryContent) -> dict[str, Any]:
    return asdict(c)


class Platform(StrEnum):
    TELEGRAM = "telegram"
    DISCORD = "discord"


class ChatKind(StrEnum):
    PRIVATE = "private"
    GROUP = "group"
    SUPERGROUP = "supergroup"
    CHANNEL = "channel"
    GUILD = "guild"  # a Discord server channel
    DM = "dm"  # a Discord direct message

    @property
    def is_private(self) -> bool:
        return self in (ChatKind.PRIVATE, ChatKind.DM)


@dataclass(slots=True)
class Chat:
    platform: Platform
    chat_id: str  # the platform's own id, as text
    kind: ChatKind
    title: str = ""
    language: str = "en"
    timezone: str = "UTC"
    push_time: str = "09:00"
    max_papers: int = 10
    active: bool = True
    id: int | None = None  # our row id


@dataclass(slots=True)
class Topic:
    """A chat's subscription to a query; `id` is what the user sees and unsubscribes by."""

    id: int
    chat_pk: int
    query: str
    created_at: datetime | None = None


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"  # given up by an older version (after 5 attempts)
    GIVEN_UP = "given_up"  # failed for a day: not tried again; `paperbot status` shows it


@dataclass(slots=True)
class Delivery:
    id: int
    chat_pk: int
    arxiv_id: str
    announced: date
    status: DeliveryStatus
    topic_query: str = ""
    attempts: int = 0
    next_attempt_at: datetime | None = None  # UTC; None: as soon as the chat's push is due
    first_failed_at: datetime | None = None
