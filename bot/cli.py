"""The `paperbot` command line (SPEC: run, summary, digest, poll, push, status)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bot.config import ConfigError, Settings, load_settings
from bot.logs import RedactingFilter, setup_logging

if TYPE_CHECKING:
    from bot.models import Paper

T = TypeVar("T")
log = logging.getLogger(__name__)

app = typer.Typer(
    name="paperbot",
    help="New arXiv papers, summarized, in your Telegram and Discord chats.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    epilog=(
        "Examples:  paperbot summary 2405.01872 --lang zh  |  "
        "paperbot digest 'cat:cs.CV AND ti:diffusion' --date 2024-05-03 --out post.md  |  "
        "paperbot poll && paperbot push --now.  Configuration: environment or .env (see .env.example)."
    ),
)
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long


class Format(StrEnum):
    markdown = "markdown"
    json = "json"


class Fail(Exception):
    """A failure to report as one line on stderr, with its exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _settings() -> tuple[Settings, RedactingFilter]:
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise Fail(str(exc), 2) from None
    return settings, setup_logging(settings.log_level, settings.secret_values())


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"error: {message}", markup=False, highlight=False)
    return typer.Exit(code)


def _run(make: Callable[[Settings], Awaitable[T]]) -> T:
    """Run one async command, turning failures into one stderr line and an exit code."""
    from bot.service import UserError

    redactor = RedactingFilter([])
    try:
        settings, redactor = _settings()
        return asyncio.run(make(settings))
    except Fail as exc:
        raise _fail(str(exc), exc.code) from None
    except UserError as exc:
        raise _fail(redactor.redact(str(exc)), exc.exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:  # one clear line, not a traceback; LOG_LEVEL=DEBUG shows the rest
        log.debug("command failed", exc_info=True)
        raise _fail(redactor.redact(f"{type(exc).__name__}: {exc}"), 1) from None


async def _with_components(settings: Settings, body: Callable[[Any], Awaitable[T]]) -> T:
    from bot.app import build_components

    components = await build_components(settings)
    try:
        return await body(components)
    finally:
        await components.aclose()


@app.command()
def summary(
    paper_id: Annotated[str, typer.Argument(metavar="ID", help="2405.01872, arXiv:2405.01872v2, an arxiv.org URL, hep-th/9901001")],
    lang: Annotated[str | None, typer.Option("--lang", help="summary language: en, zh, Chinese, German ...")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="markdown or json")] = Format.markdown,
    images: Annotated[Path | None, typer.Option("--images", help="write the paper's figure thumbnails into DIR", metavar="DIR")] = None,
) -> None:
    """Summarize one paper and print it."""
    from bot.ids import BadArxivId, parse_arxiv_id

    try:
        parse_arxiv_id(paper_id)
    except BadArxivId as exc:
        raise _fail(str(exc), 2) from None

    async def body(c: Any) -> str:
        from bot.render.markdown import render_summary_markdown
        from bot.service import Service

        service = Service(c)
        with err.status(f"Summarizing {paper_id} ...", spinner="dots"):
            result = await service.summarize(
                paper_id, lang or c.settings.language, with_images=images is not None
            )
        written: list[str] = []
        if images is not None:
            written = [str(p) for p in _export_images(result.summary.paper, result.images, images)]
            result.summary.images = written
            err.print(f"{len(written)} image(s) written to {images}", highlight=False)
        if fmt is Format.json:
            return json.dumps(result.summary.to_json(), ensure_ascii=False, indent=2)
        return render_summary_markdown(result.summary, written or None)

    out = _run(lambda s: _with_components(s, body))
    sys.stdout.write(out.rstrip("\n") + "\n")


def _export_images(paper: Paper, sources: list[Path], dest_dir: Path) -> list[Path]:
    """Copy a paper's cached thumbnails into `dest_dir` under names that say whose they are."""
    from bot.pdf import file_stem

    dest_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sources:
        dest = dest_dir / f"{file_stem(paper)}_{src.name}"
        shutil.copyfile(src, dest)
        written.append(dest)
    return written


def _parse_day(text: str | None) -> date:
    if text is None:
        return (datetime.now(UTC) - timedelta(days=1)).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Fail(f"--date {text!r} is not a date in YYYY-MM-DD form, e.g. 2024-05-03", 2) from None


@app.command()
def digest(
    query: Annotated[str, typer.Argument(metavar="QUERY", help='arXiv search syntax, e.g. \'cat:cs.CV AND ti:diffusion\'')],
    day: Annotated[str | None, typer.Option("--date", metavar="YYYY-MM-DD", help="first-submission date (UTC); default yesterday")] = None,
    max_papers: Annotated[int, typer.Option("--max", min=1, max=200, help="at most N papers")] = 20,
    lang: Annotated[str | None, typer.Option("--lang", help="summary language")] = None,
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE", help="write the post here instead of stdout")] = None,
) -> None:
    """A daily post in Markdown (Hexo front matter) for the papers that match QUERY."""
    from bot.query import QuerySyntaxError, normalize_query, parse_query, to_arxiv_search

    try:
        node = parse_query(query)
    except QuerySyntaxError as exc:
        raise _fail(f"bad query: {exc}", 2) from None
    try:
        the_day = _parse_day(day)
    except Fail as exc:
        raise _fail(str(exc), exc.code) from None

    async def body(c: Any) -> str:
        from bot.render.markdown import render_digest_post
        from bot.service import Service

        service = Service(c)
        language = service.language(lang or c.settings.language)
        with err.status(f"Searching arXiv for papers submitted on {the_day} ...", spinner="dots"):
            papers = await c.arxiv.search_submitted_on(to_arxiv_search(node), the_day, max_results=max_papers)
        papers = papers[:max_papers]
        for paper in papers:
            await c.store.upsert_paper(paper)
        summaries: list[Any] = [None] * len(papers)
        images: dict[str, list[str]] = {}
        image_dir = out.with_name(out.stem + "_images") if out else None

        async def one(i: int, progress: Progress, task: Any) -> None:
            paper = papers[i]
            summaries[i] = await c.summaries.summarize(paper, language)
            thumbs = await c.pdfs.thumbnails(paper)
            if image_dir is not None and thumbs:
                # Relative to the post, so the post and its folder can move together.
                exported = _export_images(paper, thumbs, image_dir)
                images[paper.arxiv_id] = [f"{image_dir.name}/{dest.name}" for dest in exported]
            else:
                images[paper.arxiv_id] = [str(p) for p in thumbs]
            progress.advance(task)

        with Progress(
            TextColumn("summarizing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err, transient=True,
        ) as progress:
            task = progress.add_task("papers", total=len(papers))
            # SummaryService caps concurrent LLM calls and the limiter spaces arXiv requests.
            await asyncio.gather(*(one(i, progress, task) for i in range(len(papers))))
        err.print(f"{len(papers)} paper(s) for {normalize_query(node)} on {the_day}", highlight=False)
        return render_digest_post(
            normalize_query(node), the_day, summaries, now=datetime.now(UTC), images=images,
            language=language,
        )

    post = _run(lambda s: _with_components(s, body))
    if out is None:
        sys.stdout.write(post)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(post, encoding="utf-8")
        err.print(f"wrote {out}", highlight=False)


@app.command()
def poll() -> None:
    """One poll cycle: fetch new papers for all active topics, store, match, summarize; then exit."""

    async def body(c: Any) -> str:
        from bot.poller import Poller

        report = await Poller(c).run_once(progress=lambda msg: err.print(msg, highlight=False))
        return str(report)

    sys.stdout.write(_run(lambda s: _with_components(s, body)) + "\n")


@app.command()
def push(
    now: Annotated[bool, typer.Option("--now", help="send everything pending, whatever the time")] = False,
) -> None:
    """Deliver the digests that are due (with --now: everything pending); then exit."""

    async def body(c: Any) -> str:
        from bot.delivery import PushBusy, push_once
        from bot.senders import push_senders

        try:
            report = await push_once(c, force=now, senders=lambda: push_senders(c.settings, c), wait=False)
        except PushBusy as exc:  # SPEC "Scale": the work is taken by another process; exit 0
            return str(exc)
        return str(report)

    sys.stdout.write(_run(lambda s: _with_components(s, body)) + "\n")


@app.command()
def status() -> None:
    """Chats, subscriptions, papers, summaries, pending deliveries, last poll, LLM usage, recent failures."""

    async def body(settings: Settings) -> str:
        from bot.store import Store

        async with await Store.open(settings.db_path) as store:
            total, active = await store.count_chats()
            rows = [
                ("database", store.describe()),
                ("summarizer", settings.model_name),
                ("chats", f"{total} ({active} active)"),
                ("subscriptions", str(await store.count_subscriptions())),
                ("papers", str(await store.count_papers())),
                ("summaries", str(await store.count_summaries())),
                ("pending", f"{await store.count_pending_deliveries()} deliveries"),
                ("last poll", await store.get_meta("last_poll") or "never"),
                ("announcement", await store.get_meta("last_announcement") or "none seen yet"),
                ("awaiting API", f"{len(await store.awaiting_papers())} listed paper(s) the arXiv API does not know yet"),
            ]
            lines = [f"{name + ':':<15} {value}" for name, value in rows]
            lines += _llm_usage_lines(await store.llm_usage_since(datetime.now(UTC) - timedelta(hours=24)))
            given_up, examples = await store.given_up()
            lines.append(f"{'given up:':<15} {given_up} message(s)")
            lines += [
                f"  {g.platform}:{g.chat_id} {g.what}: {g.error}"
                + (f" (failing since {g.since.isoformat(timespec='minutes')})" if g.since else "")
                for g in examples
            ]
            failures = await store.recent_failures()
            lines.append("recent failures:" + ("" if failures else " none"))
            lines += [f"  {at} {kind}: {detail}" for at, kind, detail in failures]
            return "\n".join(lines)

    sys.stdout.write(_run(body) + "\n")


def _llm_usage_lines(usage: list[Any]) -> list[str]:
    """`status`'s block of LLM calls and tokens per model (a list of bot.store.usage.LlmUsage)."""
    lines = ["LLM calls in the last 24 hours:" + ("" if usage else " none")]
    lines += [
        f"  {u.model}: {u.calls} call{'s' if u.calls != 1 else ''}, {u.input_tokens} input tokens, "
        f"{u.output_tokens} output tokens"
        for u in usage
    ]
    return lines


@app.command()
def run() -> None:
    """The long-running service: Telegram, Discord, the arXiv poller and the daily push."""

    async def body(settings: Settings) -> None:
        if settings.telegram_bot_token is None and settings.discord_bot_token is None:
            raise Fail(
                "nothing to run: set TELEGRAM_BOT_TOKEN and/or DISCORD_BOT_TOKEN (in the environment or .env)",
                2,
            )
        from bot.runner import run_service

        await run_service(settings)

    _run(body)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
