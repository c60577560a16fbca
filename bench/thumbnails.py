"""Thumbnail cost per paper: extract_figures + encode_jpeg, on one core.

Runs over the fixture PDFs, a generated 20-page paper (dense text, raster figures, vector
figures as Form XObjects and as bare paths) and a generated 100-page paper, and prints
seconds per paper and the process's peak RSS. Targets: under 1 s for a 20-page paper, peak
RSS under 300 MB.

    taskset -c 0 .venv/bin/python bench/thumbnails.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a plain script from anywhere: tests.pdfgen builds the papers

from bot.pdf import encode_jpeg, extract_figures, extract_text  # noqa: E402
from tests.pdfgen import Page, Raster, Text, Vector, body_lines, build_pdf, figure_page, text_page  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "pdf"


def generated_paper(n_pages: int, photo_scale: int = 1) -> bytes:
    """A paper-like PDF: 50 lines of text a page; figures of every kind on the first pages."""
    big, small = (1800 * photo_scale, 1000 * photo_scale), (1200 * photo_scale, 900 * photo_scale)
    figures: dict[int, tuple[Raster | Vector, str]] = {
        1: (Raster(72, 330, 460, 250, (40, 90, 200), px=big, noise=60), "Figure 1: Overview of the method."),
        3: (Vector(72, 330, 460, 260, (200, 60, 40), segments=4000), "Figure 2: Training curves."),
        5: (Raster(72, 330, 300, 220, (30, 160, 60), px=small, noise=60), "Figure 3: Qualitative results."),
        7: (Vector(72, 330, 400, 240, (120, 40, 160), form=False, segments=2000), "Figure 4: Ablation."),
        9: (Vector(72, 330, 300, 200, (220, 160, 20), segments=800), "Figure 5: More results."),
    }
    pages: list[Page] = []
    for p in range(1, n_pages + 1):
        if p in figures:
            fig, caption = figures[p]
            page = figure_page(fig, caption, lines=12, seed=p)
        else:
            page = text_page(body_lines(50, p), top=760, number=p)
        page.items.append(Text(72, 772, "Preprint. Under review.", 8))
        pages.append(page)
    return build_pdf(pages)


GENERATED = {  # file name: (pages, photo scale)
    "generated20.pdf": (20, 1),
    "generated20-photos.pdf": (20, 3),  # 5400 x 3000 and 3600 x 2700 px photos
    "generated100.pdf": (100, 1),
}


def write_papers(folder: Path) -> None:
    for name, (pages, scale) in GENERATED.items():
        (folder / name).write_bytes(generated_paper(pages, scale))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(pdf: Path, repeat: int) -> tuple[list[float], int, int]:
    times = []
    count = size = 0
    for _ in range(repeat):
        started = time.perf_counter()
        jpegs = [encode_jpeg(img) for img in extract_figures(pdf)]
        times.append(time.perf_counter() - started)
        count, size = len(jpegs), sum(map(len, jpegs))
    return times, count, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, whatever taskset said

    print(f"python {sys.version.split()[0]}, cores available: {os.cpu_count()}, pinned to 1; "
          f"peak RSS after imports {peak_rss_mb():.0f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        papers = {
            "1111.2011v2 (8 p., 3 vector figs)": FIXTURES / "1111.2011v2.pdf",
            "2203.00274v2 (10 p., 1 vector fig)": FIXTURES / "2203.00274v2_tableformer.pdf",
        }
        # Built in a child process, so that the peak RSS below is the extraction's alone.
        child = multiprocessing.get_context("fork").Process(target=write_papers, args=(Path(tmp),))
        child.start()
        child.join()
        for name, (pages, scale) in GENERATED.items():
            path = Path(tmp) / name
            label = "big photos, " if scale > 1 else ""
            papers[f"generated {pages} p. ({label}{path.stat().st_size / 1e6:.1f} MB)"] = path

        print(f"{'paper':44} {'median s':>9} {'min s':>7} {'images':>6} {'JPEG kB':>8} {'text s':>7}"
              f" {'peak RSS MB':>12}")
        for name, path in papers.items():
            times, count, size = run(path, args.repeat)
            started = time.perf_counter()
            extract_text(path, 6000 * 4)
            text_s = time.perf_counter() - started
            print(f"{name:44} {statistics.median(times):9.3f} {min(times):7.3f} {count:6d} {size / 1000:8.0f}"
                  f" {text_s:7.3f} {peak_rss_mb():12.0f}")


if __name__ == "__main__":
    main()
