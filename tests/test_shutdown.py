"""`paperbot run` stops at once on SIGTERM, even while PDFium hangs on a paper."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bot.models import Chat, ChatKind, Platform
from bot.store import Store
from tests import pdf_faults
from tests.conftest import env_for, subprocess_env
from tests.fakes.arxiv import FakeArxiv
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.pdfgen import paper

ROOT = Path(__file__).resolve().parent.parent

# `paperbot run` whose PDF worker jobs are the ones of tests/pdf_faults.py: a PDF marked "hang"
# makes the job sleep for an hour inside the worker, where PDFium would hang.
LAUNCH = (
    "import sys, bot.pdf, tests.pdf_faults as faults; "
    "bot.pdf._thumbnail_jpegs = faults.figures; bot.pdf._text_job = faults.text; "
    "from bot.cli import main; sys.argv[0] = 'paperbot'; main()"
)


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (the fork server and the PDF workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except (ProcessLookupError, FileNotFoundError):
        return False


async def test_run_exits_at_once_on_sigterm_while_a_pdf_job_hangs(tmp_path: Path, fake_arxiv: FakeArxiv) -> None:
    today = datetime.now(UTC).date()
    fake_arxiv.add_paper(
        "2405.30000", title="A paper whose PDF hangs PDFium", abstract="We study hangs.",
        published=datetime(2024, 5, 3, tzinfo=UTC), pdf=pdf_faults.with_fault(paper(1), "hang"),
    )
    fake_arxiv.set_listing("cs.CV", today, ["2405.30000"])
    with FakeTelegram() as tg:
        env = subprocess_env(
            {
                **env_for(tmp_path, fake_arxiv),
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_API_BASE_URL": tg.url,
                "PYTHONPATH": str(ROOT),
            }
        )
        async with await Store.open(env["PAPERBOT_DB"]) as store:
            chat = await store.ensure_chat(Chat(Platform.TELEGRAM, "777", ChatKind.PRIVATE))
            await store.add_topic(chat.id, "cat:cs.CV")  # type: ignore[arg-type]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LAUNCH, "run", env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            # The poll at start prepares the chat's paper: its thumbnails job hangs in a worker.
            for _ in range(300):
                if fake_arxiv.count("pdf"):
                    break
                await asyncio.sleep(0.1)
            assert fake_arxiv.count("pdf") == 1
            await asyncio.sleep(1.0)  # the job is running in its worker by now
            below = descendants(proc.pid)
            assert below  # the fork server and the workers
        finally:
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                out, err = await asyncio.wait_for(proc.communicate(), 30)
            except TimeoutError:
                proc.kill()  # a run that does not stop must not outlive the test
                await proc.wait()
                raise
    log = err.decode()
    assert proc.returncode == 0, log[-3000:]
    assert time.monotonic() - started < 10, log[-3000:]
    assert "paperbot stopped" in log
    for _ in range(50):
        if not any(alive(pid) for pid in below):
            break
        await asyncio.sleep(0.1)
    assert not any(alive(pid) for pid in below)


async def test_a_step_that_outlasts_the_grace_after_stop_is_cancelled() -> None:
    from bot.runner import until_stopped

    stop = asyncio.Event()
    finished: list[str] = []

    async def loop(step_seconds: float) -> None:
        while not stop.is_set():
            try:
                await asyncio.sleep(step_seconds)  # a step: a push waiting on a PDF job, say
            except asyncio.CancelledError:
                finished.append("cancelled")
                raise
            finished.append("step")

    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = time.monotonic()
    await until_stopped(loop(3600), stop, grace=0.2)
    assert finished == ["cancelled"] and time.monotonic() - started < 2

    # A step that ends within the grace is not cancelled: the loop ends by itself.
    stop.clear()
    finished.clear()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    await until_stopped(loop(0.1), stop, grace=5)
    assert finished == ["step"]
