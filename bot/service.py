"""What each chat command does, whatever the platform. Adapters translate events into these calls."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bot import validate
from bot.app import Components
from bot.arxiv_source import ArxivUnavailable, PaperNotFound
from bot.buttons import claim_kept
from bot.ask import Answer, Asker, clean_question, normalize_question
from bot.config import check_timezone, parse_hhmm
from bot.ids import BadArxivId, parse_arxiv_id
from bot.models import Chat, Paper, Summary, Topic
from bot.query import QuerySyntaxError, normalize_query, parse_query, to_arxiv_search
from bot.summarize.languages import language_name, normalize_language

log = logging.getLogger(__name__)

QUOTA_WINDOW = timedelta(hours=1)
MAX_PAPERS_RANGE = (1, 50)


class UserError(Exception):
    """A request we cannot serve; the message says what was wrong and how to fix it.

    `exit_code` follows SPEC for the command line: 2 for bad input, 1 for a failure at run time.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class QuotaExceeded(UserError):
    pass


ASK_EXAMPLE = "e.g. /ask 2405.01872 Which datasets do they evaluate on?"
@contextlib.contextmanager
def user_input() -> Iterator[None]:
    """Turn the validation layer's BadInput into a UserError (exit code 2: bad input)."""
    try:
        yield
    except validate.BadInput as exc:
        raise UserError(str(exc)) from None


HELP_TEXT = """\
I summarize new arXiv papers. Subscribe this chat to topics and every day at your push time \
you get the new papers on them: a one-line summary, key takeaways, figures, and the full breakdown \
on request.

Commands:
/subscribe QUERY - follow a topic (arXiv search syntax)
/unsubscribe ID|QUERY|all - stop following topics
/topics - list this chat's topics
/summary ID - summarize one paper now
/ask ID QUESTION - ask a paper a question; or reply to a paper's post with the question
/digest - today's matches for this chat
/settings - show settings; change with language L, time HH:MM, timezone Area/City, max N
/help - this text

Examples:
/subscribe cat:cs.CV AND ti:diffusion
/subscribe au:hinton OR "contrastive learning"
/subscribe cs.CL ANDNOT ti:survey
/summary 2405.01872
/summary https://arxiv.org/abs/2405.01872v1
/ask 2405.01872 Which datasets do they evaluate on?
/settings language zh
/settings time 08:30
/settings timezone Asia/Shanghai
/settings max 5

Query syntax: ti: (title), abs: (abstract), au: (author), cat: (category), all:; \
AND, OR, ANDNOT; parentheses; "quoted phrases". A bare word searches everywhere; a bare \
category such as cs.CV means cat:cs.CV. In groups and channels only admins change topics and settings."""


@dataclass
class SummaryResult:
    summary: Summary
    images: list[Path] = field(default_factory=list)
    cached: bool = False


# The kind of `button_posts` claim that makes a shared chat's /digest once per announcement.
DIGEST_KIND = "digest"


@dataclass
class DigestPost:
    """What the poster of a /digest tells `Service.posting_digest`: its first message, and
    whether every paper went out."""

    posted: str | None = None
    complete: bool = False


@dataclass
class DigestResult:
    """/digest's answer: the day's summaries that were stored or within the asker's quota.

    `left_out` papers needed a new summary the quota did not allow; `retry_minutes` is when
    the quota allows one again (None when nothing was left out).
    """

    day: date | None
    summaries: list[Summary] = field(default_factory=list)
    left_out: int = 0
    retry_minutes: int | None = None


def quota_note(left_out: int, retry_minutes: int | None, limit: int) -> str:
    """What /digest says about the papers the asker's quota left out."""
    noun = "paper needs" if left_out == 1 else "papers need"
    when = f"in about {retry_minutes} min" if retry_minutes is not None else "later"
    return (
        f"{left_out} more {noun} a new summary, and you have used your {limit} new summaries for this hour. "
        f"Ask again with /digest {when}; papers that were already summarized are always free."
    )


@dataclass
class SubscribeResult:
    topic: Topic
    created: bool
    preview: list[Paper]
    preview_error: str | None = None


class Service:
    def __init__(self, c: Components) -> None:
        self.c = c
        self.settings = c.settings
        self.store = c.store
        self._asker: Asker | None = None
        self._asking: dict[tuple[str, str, str], asyncio.Future[Answer]] = {}

    # --- papers and summaries ------------------------------------------------------------

    async def find_paper(self, id_text: str, example: str = validate.PAPER_ID_EXAMPLE) -> Paper:
        """Stored paper when we have it (no arXiv request), else arXiv's record; `example` is shown
        with an id that cannot be one."""
        with user_input():
            id_text = validate.paper_id(id_text, example)
        try:
            aid = parse_arxiv_id(id_text)
        except BadArxivId as exc:
            raise UserError(str(exc)) from None
        stored = await self.store.get_paper(aid.base, aid.version)
        if stored is not None:
            return stored
        try:
            paper = await self.c.arxiv.get_paper(aid)
        except BadArxivId as exc:  # well-formed here, but arXiv refused it
            raise UserError(str(exc)) from None
        except PaperNotFound as exc:
            raise UserError(f"{exc}. Check the id on arxiv.org.", exit_code=1) from None
        except ArxivUnavailable as exc:
            raise UserError(
                f"arXiv did not answer ({exc}); please try again in a few minutes.", exit_code=1
            ) from None
        await self.store.upsert_paper(paper)
        return paper

    async def summarize(
        self,
        id_text: str,
        language: str,
        *,
        user_key: str | None = None,
        with_images: bool = True,
    ) -> SummaryResult:
        lang = self.language(language)
        paper = await self.find_paper(id_text)
        summary = await self.c.summaries.cached(paper, lang)
        cached = summary is not None
        if summary is None:
            if user_key is not None:
                await self.charge_quota(user_key)
            summary = await self.c.summaries.summarize(paper, lang)
        images = await self.c.pdfs.thumbnails(paper) if with_images else []
        summary.images = [str(p) for p in images]
        return SummaryResult(summary, images, cached)

    async def ask(self, id_text: str, question: str, language: str, *, user_key: str | None = None) -> Answer:
        """An answer to `question` about the paper, from its own text, in `language`.

        A cached answer is free; a new one counts against the user's quota (shared with /summary).
        Raises UserError for an empty question or a paper arXiv does not know.
        """
        with user_input():
            question = validate.question(question)
        question = clean_question(question)
        lang = self.language(language)
        paper = await self.find_paper(id_text, ASK_EXAMPLE.removeprefix("e.g. "))
        if not paper.abstract.strip() and not paper.title.strip():
            raise UserError(f"arXiv has no text of {paper.versioned_id} yet; try again once it is announced.", 1)
        if self._asker is None:
            self._asker = Asker(
                self.store, self.c.summaries.primary, self.c.pdfs.first_pages_text, self.c.summaries.breaker
            )
        hit = await self._asker.cached(paper, question, lang)
        if hit is not None:
            return hit
        # The same question already being answered (updates are handled concurrently): wait for
        # that answer, which is the cached one for this asker, so free.
        key = (paper.versioned_id, normalize_question(question), lang)
        pending = self._asking.get(key)
        if pending is not None:
            try:
                return dataclasses.replace(await asyncio.shield(pending), cached=True)
            except (Exception, asyncio.CancelledError):
                if not (pending.done() and (pending.cancelled() or pending.exception() is not None)):
                    raise  # this asker was cancelled, not the other one's question
                # The other asker's failure (their quota, say) is not this one's: ask anew below.
        mine: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        # Nobody may be waiting: an exception nobody retrieves must not be logged as lost.
        mine.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._asking[key] = mine
        try:
            if user_key is not None:
                await self.charge_quota(user_key)
            answer = await self._asker.ask(paper, question, lang)
        except Exception as exc:
            mine.set_exception(exc)
            raise
        except BaseException:
            mine.cancel()
            raise
        else:
            mine.set_result(answer)
            return answer
        finally:
            if self._asking.get(key) is mine:
                del self._asking[key]

    @staticmethod
    def parse_ask(arg: str) -> tuple[str, str]:
        """`/ask ID QUESTION`'s id and question; UserError with an example when either is missing."""
        parts = arg.split(maxsplit=1)
        if not parts:
            raise UserError(f"Give a paper id and a question, {ASK_EXAMPLE}")
        if len(parts) < 2:
            raise UserError(f"Ask a question after the paper id, {ASK_EXAMPLE}")
        return parts[0], parts[1]

    @staticmethod
    def names_a_paper(text: str) -> bool:
        """Whether `text` is a paper id in one of the accepted forms (bot.ids); no lookup."""
        try:
            parse_arxiv_id(validate.paper_id(text))
        except (validate.BadInput, BadArxivId):
            return False
        return True

    async def cached_breakdown(self, id_text: str, language: str) -> Summary | None:
        """The stored summary a breakdown button shows, or None when showing it needs a new LLM call."""
        paper = await self.find_paper(id_text)
        return await self.c.summaries.stored(paper, self.language(language))

    async def charge_quota(self, user_key: str) -> None:
        """Take one on-demand LLM call from the user's hourly quota (PAPERBOT_SUMMARY_QUOTA).

        Every command that makes a new LLM call for a user (/summary, /digest, the breakdown
        button, /ask) charges here first; stored results are free. Raises QuotaExceeded, whose
        message says when the next call is allowed.
        """
        limit = self.settings.summary_quota
        if not await self.store.quota_take(user_key, limit, QUOTA_WINDOW):
            minutes = await self.quota_wait_minutes(user_key)
            wait = f" Try again in about {minutes} min." if minutes is not None else ""
            raise QuotaExceeded(
                f"You have used your {limit} new summaries for this hour.{wait} "
                "Papers that were already summarized are always free.",
                exit_code=1,
            )

    async def quota_wait_minutes(self, user_key: str) -> int | None:
        """Minutes until the user's oldest charge in the window expires (None: nothing charged)."""
        oldest = await self.store.quota_oldest(user_key, QUOTA_WINDOW)
        if oldest is None:
            return None
        return max(1, int((oldest + QUOTA_WINDOW - datetime.now(UTC)).total_seconds() // 60) + 1)

    @contextlib.asynccontextmanager
    async def posting_digest(self, chat: Chat) -> AsyncIterator[DigestPost]:
        """Around the posting of a /digest: in a shared chat (group, channel, Discord server) the
        latest announcement's digest in the chat's language is posted once; a private chat may
        have it as often as it asks.

        Raises UserError when the digest was posted there already, or is being posted: a repeated
        /digest would only flood the chat (the papers are cached, so nothing else stops it). The
        claim is kept fresh while the summaries are made, kept when the whole digest went out (the
        caller sets `posted` to its first message's id and `complete`), and released otherwise: a
        digest cut short by the asker's quota leaves the rest to another member. A claim its
        holder left by crashing lapses after the buttons' CLAIM_TIMEOUT.
        """
        post = DigestPost()
        latest = await self.store.get_meta("last_announcement")
        if chat.kind.is_private or latest is None:
            yield post
            return
        key = f"{latest}/{chat.language}"
        if not await self.store.claim_button_post(chat.platform, chat.chat_id, key, DIGEST_KIND):
            raise UserError(
                f"The digest of {latest} was posted in this chat already: scroll up to it, "
                "or show one paper again with /summary ID, e.g. /summary 2405.01872."
            )
        try:
            async with claim_kept(self.store, chat.platform, chat.chat_id, key, DIGEST_KIND):
                yield post
        finally:
            if post.posted is not None and post.complete:
                await self.store.finish_button_post(chat.platform, chat.chat_id, key, DIGEST_KIND, post.posted)
            else:
                await self.store.release_button_post(chat.platform, chat.chat_id, key, DIGEST_KIND)

    async def digest(self, chat: Chat, user_key: str | None) -> DigestResult:
        """The latest announcement's matches for the chat's topics in its language (at most its
        `max_papers`), as /digest shows them; the push ledger is not touched.

        Stored summaries are free; each paper that needs a new one takes one call from
        `user_key`'s quota (None: no quota, as for the command line). Once the quota runs out,
        the remaining unsummarized papers are left out and counted.
        """
        assert chat.id is not None
        latest = await self.store.get_meta("last_announcement")
        if latest is None:
            return DigestResult(None)
        day = date.fromisoformat(latest)
        ids = (await self.store.matches_on(chat.id, day))[: chat.max_papers]
        papers = await self.store.papers_by_id(ids)
        chosen: list[Paper] = []
        left_out = 0
        for arxiv_id in ids:
            paper = papers.get(arxiv_id)
            if paper is None:
                continue
            if user_key is not None and await self.c.summaries.cached(paper, chat.language) is None:
                if left_out:  # the quota ran out on an earlier paper: no need to ask again
                    left_out += 1
                    continue
                try:
                    await self.charge_quota(user_key)
                except QuotaExceeded:
                    left_out += 1
                    continue
            chosen.append(paper)

        async def prepared(paper: Paper) -> Summary:
            summary, images = await asyncio.gather(
                self.c.summaries.summarize(paper, chat.language), self.c.pdfs.thumbnails(paper)
            )
            summary.images = [str(p) for p in images]
            return summary

        summaries = list(await asyncio.gather(*(prepared(p) for p in chosen)))
        retry = await self.quota_wait_minutes(user_key) if left_out and user_key else None
        return DigestResult(day, summaries, left_out, retry)

    @staticmethod
    def language(text: str) -> str:
        with user_input():
            text = validate.language(text)
        try:
            return normalize_language(text)
        except ValueError as exc:
            raise UserError(str(exc)) from None

    # --- chats and topics ----------------------------------------------------------------

    def new_chat_defaults(self, chat: Chat) -> Chat:
        chat.language = self.settings.language
        chat.timezone = self.settings.timezone
        chat.push_time = self.settings.push_time
        return chat

    async def register_chat(self, chat: Chat) -> Chat:
        return await self.store.ensure_chat(self.new_chat_defaults(chat))

    @staticmethod
    def parse_topic(text: str) -> str:
        with user_input():
            text = validate.query(text)
        try:
            return normalize_query(parse_query(text))
        except QuerySyntaxError as exc:
            raise UserError(f"Could not read that query: {exc}") from None

    async def subscribe(self, chat: Chat, text: str) -> SubscribeResult:
        query = self.parse_topic(text)
        assert chat.id is not None
        existing = await self.store.list_topics(chat.id)
        if query not in {t.query for t in existing} and len(existing) >= self.settings.max_topics:
            raise UserError(
                f"This chat already has {len(existing)} topics, the most allowed. "
                "Remove one with /unsubscribe ID first (see /topics)."
            )
        since = await self.store.get_meta("last_announcement")
        topic, created = await self.store.add_topic(chat.id, query, since=since)
        preview: list[Paper] = []
        error = None
        try:
            preview = await self.c.arxiv.search(to_arxiv_search(parse_query(query)), max_results=3)
        except ArxivUnavailable as exc:
            error = f"no preview: arXiv did not answer ({exc})"
            log.warning("subscribe preview failed: %s", exc)
        return SubscribeResult(topic, created, preview, error)

    async def unsubscribe(self, chat: Chat, arg: str) -> list[Topic]:
        """Remove topics by id list, by query or all; return what was removed."""
        assert chat.id is not None
        arg = validate.clean(arg)
        if not arg:
            raise UserError("Say which topic: /unsubscribe ID, /unsubscribe QUERY or /unsubscribe all (see /topics).")
        with user_input():
            ids = validate.topic_ids(arg)
        topics = await self.store.list_topics(chat.id)
        if arg.lower() == "all":
            chosen = topics
        elif ids is not None:
            wanted = set(ids)
            chosen = [t for t in topics if t.id in wanted]
            missing = wanted - {t.id for t in chosen}
            if missing:
                raise UserError(
                    f"This chat has no topic {', '.join(f'#{m}' for m in sorted(missing))}. See /topics for the ids."
                )
        else:
            query = self.parse_topic(arg)
            chosen = [t for t in topics if t.query == query]
            if not chosen:
                raise UserError(f"This chat does not follow {query!r}. See /topics.")
        if chosen:
            await self.store.remove_topics(chat.id, [t.id for t in chosen])
        return chosen

    async def topics(self, chat: Chat) -> list[Topic]:
        assert chat.id is not None
        return await self.store.list_topics(chat.id)

    # --- settings ------------------------------------------------------------------------

    async def change_setting(self, chat: Chat, args: list[str]) -> Chat:
        """Apply `/settings NAME VALUE`; return the chat as stored."""
        assert chat.id is not None
        if len(args) < 2:
            raise UserError(
                "Use /settings language L, /settings time HH:MM, /settings timezone Area/City or /settings max N."
            )
        name = validate.clean(args[0]).lower()
        examples = {"time": "/settings time 08:30", "timezone": "/settings timezone Asia/Shanghai",
                    "tz": "/settings timezone Asia/Shanghai", "max": "/settings max 10"}
        with user_input():
            value = validate.setting_value(" ".join(args[1:]), examples.get(name, "/settings language zh"))
        if name in ("language", "lang"):
            await self.store.update_chat_settings(chat.id, language=self.language(value))
        elif name == "time":
            if validate.has_foreign_digits(value):
                raise UserError(f"Please write the time with the digits 0-9, e.g. {examples['time']}")
            try:
                h, m = parse_hhmm(value)
            except ValueError as exc:
                raise UserError(str(exc)) from None
            await self.store.update_chat_settings(chat.id, push_time=f"{h:02d}:{m:02d}")
        elif name in ("timezone", "tz"):
            try:
                await self.store.update_chat_settings(chat.id, timezone=check_timezone(value))
            except ValueError as exc:
                raise UserError(str(exc)) from None
        elif name == "max":
            lo, hi = MAX_PAPERS_RANGE
            with user_input():
                count = validate.number(value, lo, hi, "max", examples["max"])
            await self.store.update_chat_settings(chat.id, max_papers=count)
        else:
            raise UserError(
                f"Unknown setting {validate.shown(name, 30)}. Settings: language, time, timezone, max. "
                "Example: /settings time 08:30"
            )
        stored = await self.store.get_chat_by_pk(chat.id)
        assert stored is not None
        return stored

    @staticmethod
    def describe_settings(chat: Chat) -> list[tuple[str, str]]:
        return [
            ("language", f"{chat.language} ({language_name(chat.language)})"),
            ("time", chat.push_time),
            ("timezone", chat.timezone),
            ("max", f"{chat.max_papers} papers per push"),
        ]
