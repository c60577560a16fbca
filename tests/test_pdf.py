"""Paper PDFs: download and cache, figure thumbnails, first-pages text, and failure without a crash."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image

from bot.models import Paper, PaperText
from bot.pdf import PdfError, PdfService, encode_jpeg, extract_figures, extract_text
from bot.ratelimit import RateLimiter
from tests import pdf_faults
from tests.fakes.server import ThreadedServer
from tests.pdfgen import (
    Page, Raster, Text, Vector, body_lines, build_pdf, compression_bomb, figure_page, paper, text_page,
)

PDFS = Path(__file__).parent / "fixtures" / "pdf"
BETHE = PDFS / "1111.2011v2.pdf"
TABLEFORMER = PDFS / "2203.00274v2_tableformer.pdf"

RED, BLUE, GREEN, ORANGE = (200, 30, 30), (30, 40, 200), (30, 160, 60), (240, 140, 20)


def share(img: Image.Image, colour: tuple[int, int, int], tol: int = 40) -> float:
    """Fraction of the image's pixels close to `colour`."""
    small = img.convert("RGB").resize((200, max(1, round(200 * img.height / img.width))))
    raw = small.tobytes()
    px = [raw[i : i + 3] for i in range(0, len(raw), 3)]
    return sum(all(abs(a - b) <= tol for a, b in zip(p, colour)) for p in px) / len(px)


def ink(img: Image.Image) -> float:
    """Fraction of pixels that are not near-white."""
    px = img.convert("L").resize((200, 200)).tobytes()
    return sum(v < 200 for v in px) / len(px)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- figures in real arXiv PDFs ------------------------------------------------------------------


def test_vector_figures_of_a_real_paper_are_found_in_order() -> None:
    images = extract_figures(BETHE)
    # Three Form XObject figures on pp. 3, 6 and 7, white borders trimmed (Fig. 2 is a flat row of diagrams).
    assert [round(i.width / i.height, 1) for i in images] == pytest.approx([1.8, 4.3, 1.3], abs=0.25)
    assert all(0.01 < ink(i) < 0.6 for i in images)  # drawings, not blank crops
    assert share(images[0], (240, 80, 40), 50) > 0.002  # the orange nodes of the lattice in Fig. 1
    assert share(images[1], (240, 80, 40), 50) == 0  # Fig. 2 is black line diagrams


def test_real_paper_figure_without_its_caption() -> None:
    [image] = extract_figures(TABLEFORMER)
    assert image.width / image.height == pytest.approx(493 / 283, abs=0.1)
    assert share(image, (160, 40, 40), 50) > 0.002  # the dark red attention-bias dots
    bottom = image.crop((0, image.height - 12, image.width // 3, image.height))
    assert ink(bottom) < 0.01  # the "Figure 2:" caption line below is not in the picture


# --- figures of each kind, in generated papers ---------------------------------------------------


@pytest.mark.parametrize(
    ("figure", "colour"),
    [
        (Raster(100, 330, 300, 220, RED), RED),
        (Vector(100, 330, 400, 220, BLUE), BLUE),  # a Form XObject, as pdfTeX includes a PDF figure
        (Vector(100, 330, 400, 220, GREEN, form=False), GREEN),  # bare paths, found by the caption below
        # A dense, noisy curve: PDFium's bounds of such a stroke reach far into the text around it.
        (Vector(100, 330, 400, 220, BLUE, segments=3000), BLUE),
        (Vector(100, 330, 400, 220, GREEN, form=False, segments=3000), GREEN),
    ],
    ids=["raster", "form-xobject", "bare-paths", "dense-form-xobject", "dense-bare-paths"],
)
def test_each_kind_of_figure_is_found(tmp_path: Path, figure: Raster | Vector, colour: tuple[int, int, int]) -> None:
    pdf = write(tmp_path, "p.pdf", paper(3, {2: (figure, "Figure 1: The figure.")}))
    [image] = extract_figures(pdf)
    assert image.width / image.height == pytest.approx(figure.w / figure.h, rel=0.08)  # the figure, not the page
    assert share(image, colour) > 0.3
    assert max(image.size) <= 1280


def test_figure_on_a_rotated_page_is_cut_out_as_displayed(tmp_path: Path) -> None:
    page = figure_page(Raster(100, 330, 300, 220, RED), "Figure 1: Red.")
    page.rotate = 90
    [image] = extract_figures(write(tmp_path, "r.pdf", build_pdf([page])))
    assert image.height / image.width == pytest.approx(300 / 220, rel=0.08)  # turned with the page
    assert share(image, RED) > 0.3


def test_bare_paths_without_a_caption_are_not_a_figure_so_the_first_page_is_shown(tmp_path: Path) -> None:
    page = text_page(body_lines(10))
    page.items.append(Vector(100, 330, 400, 220, GREEN, form=False))
    pdf = write(tmp_path, "p.pdf", build_pdf([page, text_page(body_lines(40))]))
    [image] = extract_figures(pdf)
    assert image.size == (990, 1280)  # the whole letter-size first page
    assert share(image, GREEN) > 0.05


def test_text_only_paper_falls_back_to_its_first_page(tmp_path: Path) -> None:
    pdf = write(tmp_path, "p.pdf", paper(4))
    [image] = extract_figures(pdf)
    assert image.size == (990, 1280)
    assert 0.01 < ink(image) < 0.5


def test_captioned_figures_come_first_in_reading_order(tmp_path: Path) -> None:
    uncaptioned = text_page(body_lines(5))
    uncaptioned.items.append(Raster(72, 100, 460, 500, ORANGE))  # the biggest picture, but no caption
    pages = [
        text_page(body_lines(40)),
        uncaptioned,
        figure_page(Vector(72, 330, 230, 200, BLUE), "Figure 1: Overview."),
        figure_page(Raster(72, 330, 200, 150, RED), "Fig. 2. Results."),
    ]
    images = extract_figures(write(tmp_path, "p.pdf", build_pdf(pages)))
    assert [max((share(i, c), c) for c in (BLUE, RED, ORANGE))[1] for i in images] == [BLUE, RED, ORANGE]


def test_no_two_images_of_the_same_thing(tmp_path: Path) -> None:
    # The same picture on two pages; two halves of one figure side by side; then a distinct figure.
    halves = Page([Raster(72, 300, 200, 200, GREEN), Raster(274, 300, 200, 200, GREEN, px=(400, 400)),
                   Text(72, 286, "Figure 2: Two panels.", 9)])
    pages = [
        figure_page(Raster(100, 330, 300, 220, RED), "Figure 1: Red."),
        figure_page(Raster(100, 330, 300, 220, RED), "Figure 1: Red, again in the appendix."),
        halves,
        figure_page(Raster(100, 330, 300, 220, BLUE), "Figure 3: Blue, same layout as Figure 1."),
    ]
    images = extract_figures(write(tmp_path, "p.pdf", build_pdf(pages)))
    assert len(images) == 3
    assert share(images[0], RED) > 0.3 and share(images[2], BLUE) > 0.3
    assert images[1].width / images[1].height == pytest.approx(402 / 200, rel=0.08)  # both panels, one image


def test_at_most_max_images_and_only_the_first_pages_of_a_long_paper(tmp_path: Path) -> None:
    colours = [((53 * p) % 256, (101 * p) % 256, (197 * p) % 256) for p in range(100)]
    figs = {
        p: (Raster(100, 330, 300, 220, colours[p - 1], px=(120, 90)), f"Figure {p}: Page {p}.") for p in range(1, 101)
    }
    pdf = write(tmp_path, "long.pdf", paper(100, figs))
    started = time.monotonic()
    images = extract_figures(pdf, max_images=4)
    assert time.monotonic() - started < 5
    assert len(images) == 4
    assert [share(i, colours[n], 6) > 0.3 for n, i in enumerate(images)] == [True] * 4

    late = {p: f for p, f in figs.items() if p > 12}  # figures only beyond the pages looked at
    [image] = extract_figures(write(tmp_path, "late.pdf", paper(100, late)), max_pages=12)
    assert image.size == (990, 1280)


# --- encoding ------------------------------------------------------------------------------------


def test_jpeg_stays_within_the_chat_limits() -> None:
    rng = random.Random(7)
    noise = Image.frombytes("RGB", (4000, 3000), rng.randbytes(4000 * 3000 * 3))
    data = encode_jpeg(noise)
    out = Image.open(BytesIO(data))
    assert out.format == "JPEG" and max(out.size) == 1280 and len(data) <= 1_000_000

    small = encode_jpeg(noise, max_side=800, max_bytes=60_000)
    assert len(small) <= 60_000 and max(Image.open(BytesIO(small)).size) <= 800


def test_jpeg_pads_slivers_and_flattens_transparency() -> None:
    sliver = Image.new("RGBA", (3000, 40), (0, 0, 255, 0))
    out = Image.open(BytesIO(encode_jpeg(sliver)))
    assert out.size == (1280, 64)  # 20:1, as Telegram requires
    assert out.getpixel((640, 32)) == pytest.approx((255, 255, 255), abs=3)  # transparent became white

    tall = Image.open(BytesIO(encode_jpeg(Image.new("L", (5, 900), 0))))
    assert tall.height / tall.width <= 20 and tall.width + tall.height <= 10000


# --- broken files --------------------------------------------------------------------------------


def _broken() -> dict[str, tuple[bytes, str]]:
    good = paper(2, {1: (Raster(100, 330, 300, 220, RED), "Figure 1: Red.")})
    return {
        "corrupted": (b"%PDF-1.7\n" + random.Random(1).randbytes(5000), "malformed"),
        "truncated": (good[: len(good) // 2], "malformed or truncated"),
        "encrypted": (build_pdf([text_page(["secret"])], encrypt=True), "encrypted"),
        "empty": (b"", "malformed"),
    }


@pytest.mark.parametrize("kind", ["corrupted", "truncated", "encrypted", "empty"])
def test_unreadable_pdf_raises_pdf_error_with_the_reason(tmp_path: Path, kind: str) -> None:
    data, reason = _broken()[kind]
    path = write(tmp_path, f"{kind}.pdf", data)
    with pytest.raises(PdfError, match=reason):
        extract_figures(path)
    with pytest.raises(PdfError, match=reason):
        extract_text(path, 1000)


# --- the service: download, cache, failures ------------------------------------------------------


class PdfServer:
    """Serves PDFs (and worse) on 127.0.0.1; counts what was asked for."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.delay = 0.0
        app = web.Application()
        app.router.add_get("/pdf/{name}", self._pdf)
        app.router.add_get("/stream/{name}", self._stream)
        app.router.add_get("/moved/{name}", self._moved)
        self.server = ThreadedServer(app)

    async def _pdf(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay)
        name = request.match_info["name"]
        if name not in self.files:
            return web.Response(status=404, text="not found")
        body = self.files[name]
        kind = "application/pdf" if body.startswith(b"%PDF") else "text/html"
        return web.Response(body=body, content_type=kind)

    async def _moved(self, request: web.Request) -> web.Response:
        """Like arxiv.org sending an http:// link on to https://."""
        raise web.HTTPFound(f"/pdf/{request.match_info['name']}")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """Chunked, with no Content-Length: only counting the bytes can stop it."""
        resp = web.StreamResponse()
        await resp.prepare(request)
        body = self.files[request.match_info["name"]]
        for i in range(0, len(body), 65536):
            await resp.write(body[i : i + 65536])
        await resp.write_eof()
        return resp

    def url(self, name: str, route: str = "pdf") -> str:
        return f"{self.server.url}/{route}/{name}"

    def hits(self, name: str) -> int:
        return sum(p.endswith("/" + name) for p in self.server.paths())


@pytest.fixture
def pdf_server() -> Iterator[PdfServer]:
    s = PdfServer()
    with s.server:
        yield s


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[PdfService]:
    svc = PdfService(tmp_path / "cache", RateLimiter(0), timeout=5)
    yield svc
    await svc.aclose()


def make_paper(arxiv_id: str, pdf_url: str | None, version: int = 2) -> Paper:
    when = datetime(2024, 5, 3, tzinfo=UTC)
    return Paper(arxiv_id, version, "A paper", ["A. Author"], "Abstract.", ["cs.CV"], when, when,
                 f"https://arxiv.org/abs/{arxiv_id}v{version}", pdf_url)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.pdf" and r.levelno >= logging.WARNING]


async def test_thumbnails_are_cached_jpegs_and_a_second_call_makes_no_request(
    service: PdfService, pdf_server: PdfServer, tmp_path: Path
) -> None:
    pdf_server.files["a.pdf"] = BETHE.read_bytes()
    p = make_paper("1111.2011", pdf_server.url("a.pdf"))
    thumbs = await service.thumbnails(p)
    cache = tmp_path / "cache"
    assert thumbs == [cache / "img" / "1111.2011v2" / f"fig{i}.jpg" for i in (1, 2, 3)]
    assert (cache / "pdf" / "1111.2011v2.pdf").read_bytes() == BETHE.read_bytes()
    for t in thumbs:
        img = Image.open(t)
        assert img.format == "JPEG" and max(img.size) <= 1280 and t.stat().st_size <= 1_000_000
        assert img.width + img.height <= 10000 and max(img.size) / min(img.size) <= 20

    assert await service.thumbnails(p) == thumbs
    assert await service.thumbnails(p, max_images=1) == thumbs[:1]
    assert await service.get_pdf(p) == cache / "pdf" / "1111.2011v2.pdf"
    assert pdf_server.hits("a.pdf") == 1
    assert service.limiter.requests == 1  # the one download waited for its arXiv slot
    assert not [f for f in cache.rglob("*") if f.name.endswith((".part", ".tmp"))]


async def test_concurrent_requests_for_one_paper_download_once(service: PdfService, pdf_server: PdfServer) -> None:
    pdf_server.files["t.pdf"] = TABLEFORMER.read_bytes()
    pdf_server.delay = 0.3
    p = make_paper("2203.00274", pdf_server.url("t.pdf"))
    a, b, c = await asyncio.gather(service.thumbnails(p), service.thumbnails(p), service.first_pages_text(p))
    assert a == b and len(a) == 1
    assert c and "TABLEFORMER" in c
    assert pdf_server.hits("t.pdf") == 1


async def test_old_style_id_gets_a_flat_cache_name(service: PdfService, pdf_server: PdfServer, tmp_path: Path) -> None:
    pdf_server.files["old.pdf"] = paper(2)
    path = await service.get_pdf(make_paper("hep-th/9901001", pdf_server.url("old.pdf"), version=1))
    assert path == tmp_path / "cache" / "pdf" / "hep-th_9901001v1.pdf"


@pytest.mark.parametrize("kind", ["corrupted", "truncated", "encrypted", "empty"])
async def test_broken_pdf_gives_nothing_and_one_warning(
    service: PdfService, pdf_server: PdfServer, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    data, reason = _broken()[kind]
    pdf_server.files["x.pdf"] = data
    p = make_paper("2401.00001", pdf_server.url("x.pdf"))
    assert await service.thumbnails(p) == []
    [message] = warnings(caplog)
    assert "2401.00001v2" in message
    assert ("empty" if kind == "empty" else reason) in message


async def test_broken_pdf_gives_no_text_and_one_warning(
    service: PdfService, pdf_server: PdfServer, caplog: pytest.LogCaptureFixture
) -> None:
    pdf_server.files["e.pdf"] = _broken()["encrypted"][0]
    assert await service.first_pages_text(make_paper("2401.00002", pdf_server.url("e.pdf"))) is None
    [message] = warnings(caplog)
    assert "2401.00002v2" in message and "encrypted" in message


@pytest.mark.parametrize("route", ["pdf", "stream"], ids=["content-length", "chunked"])
async def test_oversized_pdf_is_refused(
    tmp_path: Path, pdf_server: PdfServer, caplog: pytest.LogCaptureFixture, route: str
) -> None:
    pdf_server.files["big.pdf"] = b"%PDF-1.7\n" + b"0" * 300_000
    svc = PdfService(tmp_path / "cache", RateLimiter(0), max_bytes=100_000)
    try:
        p = make_paper("2401.00003", pdf_server.url("big.pdf", route))
        assert await svc.thumbnails(p) == []
    finally:
        await svc.aclose()
    [message] = warnings(caplog)
    assert "2401.00003v2" in message and "too large" in message
    assert not (tmp_path / "cache" / "pdf" / "2401.00003v2.pdf").exists()
    assert not list((tmp_path / "cache" / "pdf").iterdir())  # no partial file left behind


async def test_non_pdf_content_is_rejected_and_not_cached(
    service: PdfService, pdf_server: PdfServer, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    pdf_server.files["page.pdf"] = b"<!DOCTYPE html><html><body>Captcha</body></html>"
    p = make_paper("2401.00004", pdf_server.url("page.pdf"))
    assert await service.get_pdf(p) is None
    [message] = warnings(caplog)
    assert "2401.00004v2" in message and "not a PDF" in message
    assert not list((tmp_path / "cache" / "pdf").iterdir())


async def test_http_error_missing_link_and_timeout_are_one_warning_each(
    tmp_path: Path, pdf_server: PdfServer, caplog: pytest.LogCaptureFixture
) -> None:
    svc = PdfService(tmp_path / "cache", RateLimiter(0), timeout=0.5)
    try:
        assert await svc.thumbnails(make_paper("2401.00005", pdf_server.url("missing.pdf"))) == []
        assert await svc.first_pages_text(make_paper("2401.00006", None)) is None
        pdf_server.files["slow.pdf"] = paper(1)
        pdf_server.delay = 1.5
        assert await svc.get_pdf(make_paper("2401.00007", pdf_server.url("slow.pdf"))) is None
    finally:
        await svc.aclose()
    assert [m.split(":")[0] for m in warnings(caplog)] == [
        "PDF of 2401.00005v2", "PDF of 2401.00006v2", "PDF of 2401.00007v2"
    ]
    assert "HTTP 404" in warnings(caplog)[0] and "no PDF link" in warnings(caplog)[1]
    assert "timed out" in warnings(caplog)[2]


# --- the worker processes: hangs, crashes and bombs cost one paper -----------------------------


def faulty_service(tmp_path: Path, **kw: object) -> PdfService:
    """A service whose worker jobs hang or abort on PDFs marked by `pdf_faults.with_fault`."""
    svc = PdfService(tmp_path / "cache", RateLimiter(0), **kw)  # type: ignore[arg-type]
    svc.figures_job = pdf_faults.figures
    svc.text_job = pdf_faults.text
    return svc


def worker_pids(svc: PdfService) -> set[int]:
    assert svc._pool is not None
    return {w.pid for w in svc._pool._pool_manager.worker_manager.workers.values()}


async def test_a_pdf_that_hangs_is_killed_remembered_as_bad_and_the_pool_goes_on(
    tmp_path: Path, pdf_server: PdfServer, caplog: pytest.LogCaptureFixture
) -> None:
    pdf_server.files["s.pdf"] = pdf_faults.with_fault(paper(1), "hang")
    pdf_server.files["b.pdf"] = BETHE.read_bytes()
    svc = faulty_service(tmp_path, job_timeout=1.0, render_slots=1)
    stuck = make_paper("2401.00008", pdf_server.url("s.pdf"))
    try:
        assert len(await svc.thumbnails(make_paper("1111.2011", pdf_server.url("b.pdf")))) == 3
        [before] = worker_pids(svc)
        started = time.monotonic()
        assert await svc.thumbnails(stuck) == []
        assert 1.0 <= time.monotonic() - started < 5
        [message] = warnings(caplog)
        assert message == "thumbnails of 2401.00008v2: none, PDF work killed after 1 s (time limit)"
        assert before not in worker_pids(svc) or not _alive(before)  # the hung worker was killed

        # The one worker is free again, and the bad paper is not worked on again: no text, no images.
        assert (await svc.first_pages_text(make_paper("1111.2011", pdf_server.url("b.pdf")))) is not None
        assert await svc.paper_text(stuck) == PaperText(None, retry=False)
        assert await svc.thumbnails(stuck) == []
        assert len(warnings(caplog)) == 1
    finally:
        await svc.aclose()
    # Remembered across a restart: a new service on the same cache does not try it again.
    again = faulty_service(tmp_path, job_timeout=1.0)
    try:
        assert again.bad_reason(stuck) == "PDF work killed after 1 s (time limit)"
        assert await again.first_pages_text(stuck) is None and again._pool is None
    finally:
        await again.aclose()
    assert pdf_server.hits("s.pdf") == 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


async def test_a_worker_that_aborts_costs_only_its_paper(
    tmp_path: Path, pdf_server: PdfServer, caplog: pytest.LogCaptureFixture
) -> None:
    """PDFium aborts the process (SIGABRT) on some files: the worker dies, the bot does not."""
    pdf_server.files["a.pdf"] = pdf_faults.with_fault(paper(1), "abort")
    pdf_server.files["b.pdf"] = BETHE.read_bytes()
    svc = faulty_service(tmp_path, render_slots=1)
    aborting = make_paper("2401.00011", pdf_server.url("a.pdf"))
    try:
        text, thumbs = await asyncio.gather(svc.paper_text(aborting), svc.thumbnails(aborting))
        assert text == PaperText(None, retry=False) and thumbs == []
        assert svc.bad_reason(aborting) == (
            "the PDF worker died (SIGABRT): a PDFium crash or the memory limit"
        )
        assert "text of 2401.00011v2: none, the PDF worker died (SIGABRT)" in warnings(caplog)[0]
        # The same service, one worker: a healthy paper works right after.
        assert len(await svc.thumbnails(make_paper("1111.2011", pdf_server.url("b.pdf")))) == 3
    finally:
        await svc.aclose()


async def test_a_worker_killed_while_idle_is_replaced(tmp_path: Path) -> None:
    """The kernel's OOM killer or an operator may kill a worker between jobs: the next job still runs."""
    svc = PdfService(tmp_path / "cache", RateLimiter(0), render_slots=1)
    paper_ = make_paper("1111.2011", None)
    try:
        first = await svc._job("text", paper_, svc.text_job, BETHE, 1000)
        [pid] = worker_pids(svc)
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            await asyncio.sleep(0.01)
        assert await svc._job("text", paper_, svc.text_job, BETHE, 1000) == first
        assert pid not in worker_pids(svc)
    finally:
        await svc.aclose()


async def test_a_compression_bomb_hits_the_memory_limit_in_the_worker(
    tmp_path: Path, pdf_server: PdfServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A 2 MB PDF whose page inflates to 2 GiB: over the worker's 512 MiB, PDFium gives up (it aborts)."""
    pdf_server.files["bomb.pdf"] = compression_bomb(2048)
    pdf_server.files["b.pdf"] = BETHE.read_bytes()
    svc = PdfService(tmp_path / "cache", RateLimiter(0), memory_limit=512 * 2**20, render_slots=1)
    bomb = make_paper("2401.00012", pdf_server.url("bomb.pdf"))
    try:
        assert await svc.paper_text(bomb) == PaperText(None, retry=False)
        assert await svc.thumbnails(bomb) == []
        [message] = warnings(caplog)
        assert message.startswith("text of 2401.00012v2: none, ")
        assert "memory limit" in message
        text = await svc.first_pages_text(make_paper("1111.2011", pdf_server.url("b.pdf")))
        assert text and text.startswith("Quantum Criticality")
    finally:
        await svc.aclose()


async def test_aclose_kills_a_hanging_job_at_once(tmp_path: Path, pdf_server: PdfServer) -> None:
    """`paperbot run` stops on SIGTERM while PDFium hangs: closing the service kills the workers."""
    pdf_server.files["s.pdf"] = pdf_faults.with_fault(paper(1), "hang")
    svc = faulty_service(tmp_path, job_timeout=600)
    job = asyncio.create_task(svc.thumbnails(make_paper("2401.00013", pdf_server.url("s.pdf"))))
    while svc._pool is None or not any(
        t.started for t in svc._pool._pool_manager.task_manager.tasks.values()
    ):
        await asyncio.sleep(0.02)
    pids = worker_pids(svc)
    started = time.monotonic()
    await svc.aclose()
    assert time.monotonic() - started < 3
    with pytest.raises(asyncio.CancelledError):
        await job
    assert not any(_alive(pid) for pid in pids)


async def test_pdfium_jobs_run_side_by_side_in_separate_workers(tmp_path: Path) -> None:
    """PDFium is not thread-safe; each worker process runs one job at a time, so results stay right."""
    expected = [(len(extract_figures(pdf)), extract_text(pdf, 5000)) for pdf in (BETHE, TABLEFORMER)]
    svc = PdfService(tmp_path / "cache", RateLimiter(0), render_slots=2)
    pdfs = [(BETHE, TABLEFORMER)[i % 2] for i in range(8)]
    try:
        figures = [svc._job("thumbnails", make_paper("x", None), svc.figures_job, pdf, 4) for pdf in pdfs]
        texts = [svc._job("text", make_paper("x", None), svc.text_job, pdf, 5000) for pdf in pdfs]
        results = await asyncio.gather(*figures, *texts)
        assert len(worker_pids(svc)) == 2
    finally:
        await svc.aclose()
    assert [(len(f), t) for f, t in zip(results[:8], results[8:])] == [expected[i % 2] for i in range(8)]


# --- text ----------------------------------------------------------------------------------------


def test_text_of_a_real_paper_stops_before_the_references_and_mends_hyphens() -> None:
    text = extract_text(TABLEFORMER, 400_000)
    assert text.startswith("TABLEFORMER: Robust Transformer Modeling")
    assert "Ethical Considerations" in text and "foresee no ethical concerns" in text
    assert "Joshua Ainslie" not in text  # the first reference
    assert "require linearization of the table structure" in text  # "lineariza-" / "tion" across lines
    assert "\ufffe" not in text and "arXiv:2203.00274v2 [cs.CL]" not in text


def test_text_drops_running_headers_page_numbers_and_stays_within_budget(tmp_path: Path) -> None:
    names = ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]
    pages = [
        text_page(
            [f"{names[n - 1]} opens this page, and the model is described in great detail on it"]
            + body_lines(30, n)
            + [f"Then {names[n - 1]} trains a trans-", "former with the usual loss, which works well for all our data."],
            header="Journal of Testing, Vol. 3, 2024", number=n,
        )
        for n in range(1, 6)
    ]
    pages[3].items.append(Text(72, 200, "References", 12))
    pages[3].items.append(Text(72, 185, "[1] A. Nother. Unrelated work on references. 1999.", 10))
    pdf = write(tmp_path, "t.pdf", build_pdf(pages))

    text = extract_text(pdf, 100_000)
    assert "Journal of Testing" not in text
    assert "Delta opens this page" in text and "Echo" not in text and "Unrelated work" not in text
    assert "Then Delta trains a transformer with the usual loss" in text
    assert not any(line.strip().isdigit() for line in text.splitlines())
    assert "  " not in text

    short = extract_text(pdf, 300)
    assert 200 < len(short) <= 300 and short.startswith("Alpha opens this page")
    assert text.startswith(short)  # cut at a word boundary


async def test_first_pages_text_uses_the_token_budget(service: PdfService, pdf_server: PdfServer) -> None:
    pdf_server.files["b.pdf"] = BETHE.read_bytes()
    text = await service.first_pages_text(make_paper("1111.2011", pdf_server.url("b.pdf")), token_budget=500)
    assert text is not None and 1800 < len(text) <= 2000
    assert text.startswith("Quantum Criticality for Extended Nodes on a Bethe Lattice")


def test_pdf_files_are_closed(tmp_path: Path) -> None:
    """PDFium holds no file open after the work: the cache may delete or replace a PDF at once."""
    pdf = write(tmp_path, "p.pdf", paper(2, {1: (Raster(100, 330, 300, 220, RED), "Figure 1: Red.")}))
    extract_figures(pdf)
    extract_text(pdf, 1000)
    fds = os.listdir("/proc/self/fd")
    assert not any(os.path.realpath(f"/proc/self/fd/{fd}") == str(pdf) for fd in fds)


async def test_a_failed_download_is_not_retried_until_its_backoff_passes(
    tmp_path: Path, pdf_server: PdfServer
) -> None:
    """Text and thumbnails of a paper whose PDF is missing cost one arXiv request, not one each."""
    svc = PdfService(tmp_path / "cache", RateLimiter(0), retry_failed_after=0.3)
    p = make_paper("2401.00009", pdf_server.url("late.pdf"))
    try:
        assert await svc.first_pages_text(p) is None
        assert await svc.thumbnails(p) == []
        assert pdf_server.hits("late.pdf") == 1
        pdf_server.files["late.pdf"] = paper(1)
        await asyncio.sleep(0.35)
        assert await svc.get_pdf(p) is not None
        assert pdf_server.hits("late.pdf") == 2
    finally:
        await svc.aclose()


async def test_each_redirect_hop_waits_for_its_own_rate_limit_slot(tmp_path: Path, pdf_server: PdfServer) -> None:
    """arXiv answers http:// PDF links with a redirect: that is a second request to arXiv."""
    pdf_server.files["real.pdf"] = paper(1)
    limiter = RateLimiter(0)
    svc = PdfService(tmp_path / "cache", limiter)
    try:
        assert await svc.get_pdf(make_paper("2401.00010", pdf_server.url("real.pdf", route="moved"))) is not None
    finally:
        await svc.aclose()
    assert pdf_server.server.paths() == ["/moved/real.pdf", "/pdf/real.pdf"]
    assert limiter.requests == 2


async def test_the_download_time_limit_does_not_count_the_wait_for_a_rate_limit_slot(
    tmp_path: Path, pdf_server: PdfServer, caplog: pytest.LogCaptureFixture
) -> None:
    """In a burst the arXiv limiter queues a download for longer than its time limit: it still succeeds."""
    pdf_server.files["q.pdf"] = paper(1)
    limiter = RateLimiter(0.4)
    for _ in range(3):
        limiter._reserve()  # three requests ahead of ours: about 1.2 s in the queue
    svc = PdfService(tmp_path / "cache", limiter, timeout=0.5)
    try:
        started = time.monotonic()
        assert await svc.get_pdf(make_paper("2401.00014", pdf_server.url("q.pdf", route="moved"))) is not None
        assert time.monotonic() - started > 1.0  # waited for its slots (two: the redirect is a request too)
        assert warnings(caplog) == []

        # A transfer slower than the limit still times out, and may succeed later: a summary retries.
        pdf_server.delay = 1.0
        slow = make_paper("2401.00015", pdf_server.url("q.pdf"))
        assert await svc.paper_text(slow) == PaperText(None, retry=True)
        assert "timed out" in warnings(caplog)[0]
        assert await svc.paper_text(make_paper("2401.00016", None)) == PaperText(None, retry=False)
    finally:
        await svc.aclose()
