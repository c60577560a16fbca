"""What running PDFium in worker processes costs: PdfService's pool against in-process calls.

Times, on the fixture PDF 1111.2011v2 (8 pages, 3 vector figures):
- the same job (thumbnails: extract_figures + encode_jpeg; text: extract_text) in-process and
  through PdfService's worker pool (median of --repeat runs, pool already started);
- the first job of a fresh service (fork server and worker start included);
- replacing a worker: a job that hangs is killed at its time limit (1 s here), and the time
  from the kill until the next job's result is measured;
- a compression bomb (2 MB file, 2 GiB inflated) under the 1 GiB memory limit: the time until
  the job fails and the peak RSS of this process (the bot's side) stays flat.

    .venv/bin/python bench/pdf_pool.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.models import Paper  # noqa: E402
from bot.pdf import PdfService, _text_job, _thumbnail_jpegs  # noqa: E402
from bot.ratelimit import RateLimiter  # noqa: E402
from tests import pdf_faults  # noqa: E402
from tests.pdfgen import compression_bomb, paper  # noqa: E402

PDF = ROOT / "tests" / "fixtures" / "pdf" / "1111.2011v2.pdf"


def _paper(arxiv_id: str) -> Paper:
    from datetime import UTC, datetime

    when = datetime(2024, 1, 1, tzinfo=UTC)
    return Paper(arxiv_id, 1, "t", [], "a", ["cs.CV"], when, when, "", None)


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


async def main(repeat: int) -> None:
    rows: list[tuple[str, str]] = []
    for name, fn, arg in (("thumbnails", _thumbnail_jpegs, 4), ("text", _text_job, 24000)):
        local = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn(str(PDF), arg)
            local.append(time.perf_counter() - t)
        rows.append((f"{name}, in-process", f"{_median_ms(local)} ms"))

    with tempfile.TemporaryDirectory() as tmp:
        svc = PdfService(Path(tmp), RateLimiter(0), render_slots=1)
        t = time.perf_counter()
        await svc._job("text", _paper("x"), svc.text_job, PDF, 24000)
        rows.append(("first job of a fresh service (pool start)", f"{_median_ms([time.perf_counter() - t])} ms"))
        for name, job, arg in (("thumbnails", svc.figures_job, 4), ("text", svc.text_job, 24000)):
            pooled = []
            for _ in range(repeat):
                t = time.perf_counter()
                await svc._job(name, _paper("x"), job, PDF, arg)
                pooled.append(time.perf_counter() - t)
            rows.append((f"{name}, through the pool", f"{_median_ms(pooled)} ms"))
        await svc.aclose()

        svc = PdfService(Path(tmp) / "b", RateLimiter(0), render_slots=1, job_timeout=1.0)
        svc.text_job = pdf_faults.text
        hang = Path(tmp) / "hang.pdf"
        hang.write_bytes(pdf_faults.with_fault(paper(1), "hang"))
        await svc._job("text", _paper("x"), svc.text_job, PDF, 1000)  # pool started
        t = time.perf_counter()
        try:
            await svc._job("text", _paper("hang"), svc.text_job, hang, 1000)
        except Exception:  # noqa: BLE001 - _Unusable: killed at the limit
            pass
        killed = time.perf_counter()
        await svc._job("text", _paper("x"), svc.text_job, PDF, 1000)
        rows.append(("hung job killed at its 1 s limit", f"{_median_ms([killed - t])} ms"))
        rows.append(("next job after the kill (new worker)", f"{_median_ms([time.perf_counter() - killed])} ms"))

        await svc.aclose()

        svc = PdfService(Path(tmp) / "c", RateLimiter(0), render_slots=1)  # 60 s, 1 GiB: the defaults
        bomb = Path(tmp) / "bomb.pdf"
        bomb.write_bytes(compression_bomb(2048))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        try:
            await svc._job("text", _paper("bomb"), svc.text_job, bomb, 1000)
        except Exception as exc:  # noqa: BLE001
            outcome = str(exc)
        rows.append(("compression bomb (2 GiB) fails under the 1 GiB limit", f"{_median_ms([time.perf_counter() - t])} ms"))
        rows.append(("  reason", outcome))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rows.append(("  bot process peak RSS before / after", f"{before // 1024} / {after // 1024} MB"))
        await svc.aclose()

    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    asyncio.run(main(parser.parse_args().repeat))
