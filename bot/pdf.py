"""A paper's PDF: download and cache it, take its figures as thumbnails, read its first pages as text.

PDFium is not thread-safe: no two of its calls may run at once in a process, not even on
different documents (pypdfium2, "Incompatibility with Threading"). `extract_figures` and
`extract_text` must therefore be called from one thread at a time. `PdfService` runs them in
worker processes (one job at a time each), under a time and a memory limit: a PDF that hangs
PDFium, a compression bomb that exhausts memory, or an abort inside PDFium (SIGABRT, no
Python exception) costs only that worker, which is replaced, and that paper, which is
remembered as bad.

Figures in arXiv PDFs come in three shapes: embedded raster images; included vector graphics,
which pdfTeX turns into Form XObjects; and figures drawn straight onto the page (TikZ). The
first two are page objects with bounds; the third is found from its "Figure N" caption by
gathering the drawings just above it. A caption below a region also ranks it as a real figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import multiprocessing.context
import os
import re
import secrets
import shutil
import signal
import statistics
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TypeVar

import httpx
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from pebble import ProcessExpired, ProcessPool
from PIL import Image, ImageChops

from bot.models import Paper, PaperText
from bot.ratelimit import RateLimiter

log = logging.getLogger(__name__)

T = TypeVar("T")

_USER_AGENT = "paperbot/0.1 (arXiv digest bot)"
_MAGIC = b"%PDF-"

# Figure finding, in PDF units (1/72 in).
_MIN_SIDE = 40.0  # a wide plot can be this flat (1111.2011 Fig. 2 is 204 x 55)
_MIN_AREA = 0.012  # of the page
_MAX_AREA = 0.85  # more is the page itself: a scan or a wrapper around the whole content
_MAX_ASPECT = 8.0  # flatter than this is a rule or a banner, not a figure
_MIN_PX = 48  # an embedded image smaller than this is an icon
_MAX_PIXELS = 36_000_000  # a bigger embedded image would take >100 MB to decode: not worth a thumbnail
_MERGE_GAP = 5.0  # sub-figures closer than twice this are one figure
_CAPTION_GAP = 40.0  # from a figure's bottom to its caption's top
_CLUSTER_GAP = 30.0  # between the drawings of one bare-path figure
_PAD = 3.0
_MAX_OBJECTS = 20_000  # per page; a pathological page is cut off, not walked forever
_DEADLINE = 20.0  # seconds for the page scan of one paper
_MAX_SCALE = 4.0  # 288 dpi: enough for a small figure, no more
_DUP_BITS = 12  # of the 256-bit difference hash: near-identical, not merely alike
_DUP_COLOUR = 8.0  # mean channel difference of 8x8 thumbnails, out of 255

_CAPTION = re.compile(r"^(?i:fig(?:ure|\.)?)\s*(\d+)\s*(?:[.:|]|\s+[A-Z])")

# Text.
_MAX_TEXT_PAGES = 40
_EDGE_LINES = 3  # where running headers, footers and page numbers live
_REFERENCES = re.compile(r"^(?:\d+\.?|[IVX]+\.)?\s*(?:references|bibliography|literature cited)\s*$", re.I)
_PAGE_NUMBER = re.compile(r"^(?:page\s*)?\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?$", re.I)
_ARXIV_STAMP = re.compile(
    r"arXiv:(?:\d{4}\.\d{4,5}|[a-z-]+(?:\.[A-Z]{2})?/\d{7})v\d+\s*"
    r"(?:\[[^\]]{1,40}\])?\s*\d{1,2}\s*[A-Z][a-z]{2}\s*\d{4}"
)  # the stamp arXiv prints down the margin of page 1
_SOFT_HYPHEN = "\ufffe"  # PDFium's mark for a hyphen that ends a line


class PdfError(Exception):
    """The PDF cannot be used; the message says why, for the log.

    `transient` marks a download that may succeed later (an HTML page in place of the PDF).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


Rect = tuple[float, float, float, float]  # left, bottom, right, top in page units


@dataclass
class _Region:
    page: int
    rect: Rect
    caption: int | None = None  # the figure number of the caption below it

    def rank(self, page_width: float) -> tuple[float, ...]:
        l, b, r, t = self.rect
        if self.caption is not None:  # reading order: page, column, top to bottom
            return (0, self.page, float(l >= page_width / 2 and r - l < 0.6 * page_width), -t)
        return (1, -_area(self.rect))


# --- geometry ----------------------------------------------------------------------------------


def _area(r: Rect) -> float:
    return max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])


def _union(a: Rect, b: Rect) -> Rect:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _near(a: Rect, b: Rect, gap: float) -> bool:
    return a[0] - gap <= b[2] and b[0] - gap <= a[2] and a[1] - gap <= b[3] and b[1] - gap <= a[3]


def _merge(rects: list[Rect], gap: float = _MERGE_GAP) -> list[Rect]:
    """Union rectangles that overlap or nearly touch, until none do: one figure, one region."""
    out = list(rects)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                if _near(out[i], out[j], gap):
                    out[i] = _union(out[i], out.pop(j))
                    merged = True
                    break
            if merged:
                break
    return out


def _figure_sized(r: Rect, page_area: float) -> bool:
    w, h = r[2] - r[0], r[3] - r[1]
    if min(w, h) < _MIN_SIDE or max(w, h) / min(w, h) > _MAX_ASPECT:
        return False
    return _MIN_AREA <= _area(r) / page_area <= _MAX_AREA


# --- figures -----------------------------------------------------------------------------------


def _open(pdf_path: Path) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(pdf_path)
    except pdfium.PdfiumError as exc:
        reasons = {
            pdfium_c.FPDF_ERR_PASSWORD: "encrypted PDF (a password is required)",
            pdfium_c.FPDF_ERR_SECURITY: "encrypted PDF (unsupported security handler)",
            pdfium_c.FPDF_ERR_FORMAT: "malformed or truncated PDF",
            pdfium_c.FPDF_ERR_FILE: "unreadable PDF file",
        }
        raise PdfError(reasons.get(exc.err_code or 0, f"unreadable PDF ({exc})")) from None
    except (OSError, ValueError) as exc:
        raise PdfError(f"unreadable PDF file ({exc})") from None


def _objects(page: pdfium.PdfPage, form: pdfium.PdfObject | None = None, level: int = 0) -> Iterator[pdfium.PdfObject]:
    """One level of page objects (the page's own, or a form's children)."""
    return page.get_objects(max_depth=level + 1, form=form, level=level)


def _captions(textpage: pdfium.PdfTextPage) -> list[tuple[int, Rect]]:
    """'Figure N' / 'Fig. N' captions that start a line: (N, rect of the caption's first line)."""
    found = []
    searcher = textpage.search("fig", match_case=False)
    while (hit := searcher.get_next()) is not None:
        index = hit[0]
        if index > 0 and textpage.get_text_range(index - 1, 1) not in ("\n", "\r"):
            continue
        m = _CAPTION.match(textpage.get_text_range(index, 24).replace(_SOFT_HYPHEN, ""))
        if m and textpage.count_rects(index, 120) > 0:
            found.append((int(m.group(1)), textpage.get_rect(0)))
    searcher.close()
    return found


def _page_regions(page: pdfium.PdfPage, index: int) -> list[_Region]:
    left, bottom, right, top = page.get_bbox()
    page_area = (right - left) * (top - bottom)
    candidates: list[Rect] = []
    drawings: list[Rect] = []  # everything drawn that is not text: material for a bare-path figure
    texts: list[Rect] = []  # text of the page itself; a figure's own labels sit inside its form
    seen = 0
    stack: list[tuple[pdfium.PdfObject | None, int]] = [(None, 0)]
    while stack:
        form, level = stack.pop()
        for obj in _objects(page, form, level):
            seen += 1
            if seen > _MAX_OBJECTS:
                stack.clear()
                break
            try:
                rect = obj.get_bounds()
            except pdfium.PdfiumError:
                continue
            if obj.type == pdfium_c.FPDF_PAGEOBJ_TEXT:
                texts.append(rect)
                continue
            if obj.type == pdfium_c.FPDF_PAGEOBJ_FORM and _area(rect) / page_area > _MAX_AREA and level < 3:
                stack.append((obj, level + 1))  # a wrapper around the page: its children are the content
                continue
            drawings.append(rect)
            if not _figure_sized(rect, page_area):
                continue
            if obj.type == pdfium_c.FPDF_PAGEOBJ_FORM:
                candidates.append(rect)
            elif obj.type == pdfium_c.FPDF_PAGEOBJ_IMAGE:
                try:
                    w, h = obj.get_px_size()  # type: ignore[attr-defined]
                except pdfium.PdfiumError:
                    continue
                if min(w, h) >= _MIN_PX and w * h <= _MAX_PIXELS:
                    candidates.append(rect)

    regions = [_Region(index, r) for r in _merge(candidates)]
    textpage = page.get_textpage()
    try:
        captions = _captions(textpage)
    finally:
        textpage.close()
    for number, cap in captions:
        below = [
            g for g in regions
            if g.caption is None
            and -5 <= g.rect[1] - cap[3] <= _CAPTION_GAP
            and g.rect[0] - 10 <= cap[2] and cap[0] <= g.rect[2] + 10
        ]
        if below:
            g = min(below, key=lambda g: g.rect[1] - cap[3])
            g.caption = number
            g.rect = (g.rect[0], max(g.rect[1], cap[3] + _PAD + 0.5), g.rect[2], g.rect[3])  # not the caption itself
            continue
        rect = _gather_above(cap, drawings)
        if rect and not any(_near(rect, g.rect, 0) for g in regions):
            regions.append(_Region(index, rect, number))
    lines = _text_lines(texts)
    for g in regions:
        g.rect = _without_body_text(g.rect, lines)
    return [g for g in regions if _figure_sized(g.rect, page_area)]


def _text_lines(runs: list[Rect]) -> list[Rect]:
    """Text runs joined into lines: runs on one baseline with no more than a word gap between them."""
    runs = sorted(runs, key=lambda r: (-round(r[3]), r[0]))
    lines: list[Rect] = []
    for r in runs:
        last = lines[-1] if lines else None
        if last and abs(last[3] - r[3]) < 2 and abs(last[1] - r[1]) < 3 and r[0] - last[2] < 12:
            lines[-1] = _union(last, r)
        else:
            lines.append(r)
    return lines


def _without_body_text(rect: Rect, lines: list[Rect]) -> Rect:
    """Shrink a region off the lines of body text at its top or bottom.

    PDFium's bounds of a stroked path with very sharp corners (a dense, noisy curve) reach
    far beyond the ink, and a figure's region would take in the paragraphs around it. A line
    of text as wide as most of the region is prose, not a label inside a figure.
    """
    l, b, r, t = rect
    middle = (b + t) / 2
    for line in lines:
        overlap = min(r, line[2]) - max(l, line[0])
        if overlap < 0.6 * (r - l) or line[1] >= t or line[3] <= b:
            continue
        slack = 1 + 0.35 * (line[3] - line[1])  # descenders can reach below a text object's bounds
        if (line[1] + line[3]) / 2 > middle:
            t = min(t, line[1] - slack)
        else:
            b = max(b, line[3] + slack)
    return (l, b, r, t) if t > b else rect


def _gather_above(cap: Rect, drawings: list[Rect]) -> Rect | None:
    """The drawings stacked just above a caption, within its column: a figure made of bare paths."""
    span = (cap[0] - 10, cap[2] + 10)
    pool = sorted(
        (d for d in drawings if d[1] >= cap[3] - 2 and d[0] <= span[1] and d[2] >= span[0]), key=lambda d: d[1]
    )
    region: Rect | None = None
    reach = cap[3] + _CLUSTER_GAP
    for d in pool:
        if d[1] > reach:
            break
        region = d if region is None else _union(region, d)
        reach = max(reach, d[3] + _CLUSTER_GAP)
    return region


def _render(page: pdfium.PdfPage, rect: Rect, max_side: int, trim: bool = True) -> Image.Image:
    """Render one region of a page, longest side at most `max_side` pixels, white borders trimmed."""
    left, bottom, right, top = page.get_bbox()
    l, b = max(rect[0] - _PAD, left), max(rect[1] - _PAD, bottom)
    r, t = min(rect[2] + _PAD, right), min(rect[3] + _PAD, top)
    # Map the region through the page's own transform (rotation, box offsets) onto a fine
    # device grid; `render` crops in those device units.
    width, height = page.get_size()
    fine = 8
    conv = pdfium.PdfPosConv(page, (0, 0, round(width * fine), round(height * fine), 0))
    xs, ys = zip(*(conv.to_bitmap(x, y) for x in (l, r) for y in (b, t)))
    crop = (min(xs) / fine, height - max(ys) / fine, width - max(xs) / fine, min(ys) / fine)
    w, h = width - crop[0] - crop[2], height - crop[1] - crop[3]
    scale = min(max_side / max(w, h), _MAX_SCALE)
    bitmap = page.render(scale=scale, crop=tuple(max(0.0, c) for c in crop), rev_byteorder=True)
    try:
        img = bitmap.to_pil().convert("RGB")  # a copy, independent of PDFium's buffer
    finally:
        bitmap.close()
    if not trim:
        return img
    # Bounds are often looser than the ink (whitespace in a form's box, PDFium's stroke bounds).
    ink = ImageChops.difference(img, Image.new("RGB", img.size, "white")).convert("L")
    box = ink.point(lambda v: 255 if v > 12 else 0).getbbox()
    if box is None:
        return img
    margin = max(4, round(_PAD * scale))
    return img.crop((
        max(0, box[0] - margin), max(0, box[1] - margin),
        min(img.width, box[2] + margin), min(img.height, box[3] + margin),
    ))


@dataclass
class _Print:
    """A small perceptual fingerprint: shape, a difference hash for structure, a tiny thumbnail for colour."""

    aspect: float
    dhash: int
    thumb: bytes

    @classmethod
    def of(cls, img: Image.Image) -> _Print:
        grey = img.convert("L").resize((17, 16), Image.Resampling.BILINEAR).tobytes()
        bits = 0
        for row in range(16):
            for col in range(16):
                bits = bits << 1 | (grey[row * 17 + col] > grey[row * 17 + col + 1])
        thumb = img.convert("RGB").resize((8, 8), Image.Resampling.BOX).tobytes()
        return cls(img.width / img.height, bits, thumb)

    def same_as(self, other: _Print) -> bool:
        if abs(self.aspect - other.aspect) > 0.15 * self.aspect:
            return False
        if bin(self.dhash ^ other.dhash).count("1") > _DUP_BITS:
            return False
        return sum(abs(a - b) for a, b in zip(self.thumb, other.thumb)) / len(self.thumb) <= _DUP_COLOUR


def extract_figures(pdf_path: Path, max_images: int = 4, max_pages: int = 12) -> list[Image.Image]:
    """The paper's main figures, best first, each rendered to at most 1280 px; the first page if none.

    Raises PdfError when the file cannot be read at all.
    """
    if max_images <= 0:
        return []
    started = time.monotonic()
    pdf = _open(pdf_path)
    try:
        regions: list[_Region] = []
        page_width = 612.0
        for index in range(min(len(pdf), max_pages)):
            try:
                page = pdf[index]
            except pdfium.PdfiumError:
                continue
            try:
                if index == 0:
                    page_width = page.get_width()
                regions += _page_regions(page, index)
            except pdfium.PdfiumError as exc:
                log.debug("%s page %d skipped: %s", pdf_path.name, index + 1, exc)
            finally:
                page.close()
            # Captioned figures rank in reading order, so later pages cannot beat these.
            if sum(g.caption is not None for g in regions) >= max_images + 2:
                break
            if time.monotonic() - started > _DEADLINE:
                log.info("%s: figure search stopped after %d pages (time budget)", pdf_path.name, index + 1)
                break
        regions.sort(key=lambda g: g.rank(page_width))
        kept: list[tuple[Image.Image, _Print]] = []
        for region in regions:
            if len(kept) >= max_images:
                break
            page = pdf[region.page]
            try:
                img = _render(page, region.rect, 1280)
            except (pdfium.PdfiumError, ValueError):
                continue
            finally:
                page.close()
            fingerprint = _Print.of(img)
            if not any(fingerprint.same_as(other) for _, other in kept):
                kept.append((img, fingerprint))
        if not kept and len(pdf) > 0:
            page = pdf[0]
            try:
                first = _render(page, page.get_bbox(), 1280, trim=False)
                kept.append((first, _Print.of(first)))
            finally:
                page.close()
        return [img for img, _ in kept]
    except pdfium.PdfiumError as exc:
        raise PdfError(f"PDF could not be rendered ({exc})") from None
    finally:
        pdf.close()


def encode_jpeg(img: Image.Image, max_side: int = 1280, max_bytes: int = 1_000_000) -> bytes:
    """A JPEG that Telegram and Discord take as a photo: longest side <= max_side, aspect <= 20, <= max_bytes."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.new("RGB", rgba.size, "white")
        img.paste(rgba, mask=rgba.getchannel("A"))
    else:
        img = img.convert("RGB")
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    img = _pad_aspect(img, 20.0)
    while True:
        for quality in (85, 75, 60, 45):
            buf = BytesIO()
            img.save(buf, "JPEG", quality=quality, optimize=True)
            if buf.tell() <= max_bytes:
                return buf.getvalue()
        if max(img.size) <= 16:
            return buf.getvalue()
        smaller = (max(1, img.width * 3 // 4), max(1, img.height * 3 // 4))
        img = _pad_aspect(img.resize(smaller, Image.Resampling.LANCZOS), 20.0)


def _pad_aspect(img: Image.Image, limit: float) -> Image.Image:
    """Pad a sliver with white up to the aspect-ratio limit (Telegram refuses photos beyond 20:1)."""
    w, h = img.size
    if max(w, h) <= limit * min(w, h):
        return img
    size = (w, math.ceil(w / limit)) if w > h else (math.ceil(h / limit), h)
    canvas = Image.new("RGB", size, "white")
    canvas.paste(img, ((size[0] - w) // 2, (size[1] - h) // 2))
    return canvas


# --- text --------------------------------------------------------------------------------------


def extract_text(pdf_path: Path, max_chars: int) -> str:
    """The text of the first pages up to the references, cleaned and cut to `max_chars`, each page
    after the first starting after a PAGE_BREAK ("\f").

    Raises PdfError when the file cannot be read at all.
    """
    pages: list[list[str]] = []
    pdf = _open(pdf_path)
    try:
        total = 0
        for index in range(min(len(pdf), _MAX_TEXT_PAGES)):
            try:
                page = pdf[index]
                try:
                    text = page.get_textpage().get_text_range()
                finally:
                    page.close()  # closes its text page too
            except pdfium.PdfiumError:
                continue
            lines = [ln.strip() for ln in re.split(r"\r\n|\r|\n", text)]
            pages.append([ln for ln in lines if ln])
            total += len(text)
            if any(_REFERENCES.match(ln) for ln in lines):
                break
            # Cleaning drops some, so read on a little past the budget; and at least three
            # pages, or running headers cannot be told from the text.
            if total > max_chars * 1.3 + 2000 and len(pages) >= 3:
                break
    finally:
        pdf.close()
    return _clean(pages, max_chars)


def _norm(line: str) -> str:
    return re.sub(r"\d+", "#", line.lower())


def _clean(pages: list[list[str]], max_chars: int) -> str:
    edges = [set(_norm(ln) for ln in p[:_EDGE_LINES] + p[-_EDGE_LINES:]) for p in pages]
    counts: dict[str, int] = {}
    for edge in edges:
        for key in edge:
            counts[key] = counts.get(key, 0) + 1
    repeated = {k for k, n in counts.items() if n >= max(2, 0.3 * len(pages))}

    lines: list[str] = []
    for page in pages:
        if lines:
            lines.append(PAGE_BREAK)  # _finish turns it into the "\f" that tells pages apart
        for i, line in enumerate(page):
            at_edge = i < _EDGE_LINES or i >= len(page) - _EDGE_LINES
            if (at_edge and _PAGE_NUMBER.match(line)) or _norm(line) in repeated:
                continue
            if _REFERENCES.match(line):
                return _finish(lines, max_chars)
            line = _tidy(_ARXIV_STAMP.sub("", line))
            if line:
                lines.append(line)
    return _finish(lines, max_chars)


def _tidy(line: str) -> str:
    """Drop control and private-use characters (PDFium's stand-ins for math glyphs); collapse spaces."""
    kept = "".join(ch for ch in line if ch == _SOFT_HYPHEN or unicodedata.category(ch) not in ("Cc", "Co", "Cs"))
    return re.sub(r"[^\S\n]+", " ", kept).strip()


PAGE_BREAK = "\f"  # between the pages of extract_text's result: page N is text.split(PAGE_BREAK)[N - 1]


def _finish(lines: list[str], max_chars: int) -> str:
    """Join hard-wrapped lines into paragraphs, mend words split across lines, cut at a word boundary."""
    if not lines:
        return ""
    long_lines = [len(ln) for ln in lines if len(ln) > 20]
    typical = statistics.median(long_lines) if long_lines else 60
    out: list[str] = [lines[0]]
    prev_line, new_page = lines[0], False
    for line in lines[1:]:
        if line == PAGE_BREAK:
            new_page = True
            continue
        prev = out[-1]
        # A page's text starts after a "\f" (whitespace to every reader of the text); a word mended
        # across pages stays whole, and the break goes in at the next line.
        sep = PAGE_BREAK if new_page else ""
        if prev.endswith("-") and len(prev) > 1 and prev[-2].isalpha() and line[0].islower():
            out[-1] = prev[:-1] + line
        elif prev.endswith(("-", _SOFT_HYPHEN)):
            out[-1] = prev + line
        elif len(prev_line) < 0.6 * typical:
            out.append(sep + line)  # a short line ends a paragraph or is a heading
            new_page = False
        else:
            out[-1] = prev + (sep or " ") + line
            new_page = False
        prev_line = line
    text = "\n".join(out)
    # PDFium marks a hyphen at a line end, and sometimes joins the two lines itself.
    text = re.sub(rf"(?<=[^\W\d_]){_SOFT_HYPHEN}(?=[a-z])", "", text).replace(_SOFT_HYPHEN, "-")
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return (cut[:space] if space > max_chars // 2 else cut).rstrip()


# --- the service -------------------------------------------------------------------------------


def _thumbnail_jpegs(pdf_path: str, max_images: int) -> list[bytes]:
    """Worker job: the figures as JPEGs (PdfError when the file cannot be read)."""
    return [encode_jpeg(img) for img in extract_figures(Path(pdf_path), max_images)]


def _text_job(pdf_path: str, max_chars: int) -> str:
    """Worker job: `extract_text` of the file."""
    return extract_text(Path(pdf_path), max_chars)


def _limit_memory(limit: int | None) -> None:
    """Worker start: cap the address space, so a compression bomb fails in the worker, not the bot.

    Past the limit PDFium aborts (SIGABRT) or Python raises MemoryError; either way only this
    worker is lost. Without `resource` (Windows) there is no limit.
    """
    if not limit:
        return
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux or macOS
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _mp_context() -> multiprocessing.context.BaseContext:
    """Workers never fork the bot itself (its threads and event loop): forkserver, else spawn.

    The fork server imports this module once, so a replaced worker starts in milliseconds.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


class _Unusable(Exception):
    """The job failed for a reason that will not change (already logged and remembered)."""


def file_stem(paper: Paper) -> str:
    """`hep-th/9901001` v2 -> `hep-th_9901001v2`: one file name per paper version."""
    return f"{paper.arxiv_id.replace('/', '_')}v{paper.version}"


def _describe(exc: BaseException, seconds: float) -> str:
    if isinstance(exc, PdfError):
        return str(exc)
    if isinstance(exc, httpx.HTTPStatusError):
        return f"download failed: HTTP {exc.response.status_code}"
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return f"timed out after {seconds:g} s"
    if isinstance(exc, httpx.TransportError):
        return f"download failed: {type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"


def _transient(exc: BaseException) -> bool:
    """Whether a failed download may succeed later: timeouts, network, 5xx/408/429, an HTML page."""
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return code >= 500 or code in (408, 429)
    if isinstance(exc, PdfError):
        return exc.transient
    return isinstance(exc, (httpx.TransportError, TimeoutError, OSError))


def _signal_name(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-exitcode).name
    return f"exit code {exitcode}"


_MAX_REDIRECTS = 5


class PdfService:
    """Downloads (once, rate-limited, cached by id and version) and works on paper PDFs.

    PDFium runs in `render_slots` worker processes (started at the first job), each job under
    `job_timeout` seconds and a worker address space of `memory_limit` bytes. A job past
    either is killed with its worker, which is replaced; the paper is remembered as bad in
    `<cache>/bad/<stem>.txt` (the reason), and gets no images and no text from then on.
    """

    def __init__(
        self,
        cache_dir: Path,
        limiter: RateLimiter,
        *,
        max_bytes: int = 40 * 2**20,
        timeout: float = 60.0,
        render_slots: int = 2,
        http: httpx.AsyncClient | None = None,
        retry_failed_after: float = 1800.0,
        job_timeout: float = 60.0,
        memory_limit: int | None = 2**30,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.limiter = limiter
        # A PDF that failed to download is not asked for again (text, thumbnails, every poll)
        # until this many seconds have passed: each try costs one of arXiv's 3-second slots.
        self.retry_failed_after = retry_failed_after
        self._failed: dict[str, tuple[float, bool]] = {}  # file name -> (monotonic time, transient)
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.job_timeout = job_timeout
        self.memory_limit = memory_limit
        self.workers = max(1, render_slots)
        # The worker jobs: module-level functions, so that a worker process can import them.
        self.figures_job: Callable[[str, int], list[bytes]] = _thumbnail_jpegs
        self.text_job: Callable[[str, int], str] = _text_job
        self._pool: ProcessPool | None = None
        self._closed = False
        self._inflight: dict[str, asyncio.Future[object]] = {}
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=timeout, follow_redirects=True, headers={"User-Agent": _USER_AGENT}
        )

    def pdf_path(self, paper: Paper) -> Path:
        return self.cache_dir / "pdf" / f"{file_stem(paper)}.pdf"

    def image_dir(self, paper: Paper) -> Path:
        return self.cache_dir / "img" / file_stem(paper)

    def _bad_path(self, paper: Paper) -> Path:
        return self.cache_dir / "bad" / f"{file_stem(paper)}.txt"

    def bad_reason(self, paper: Paper) -> str | None:
        """Why this paper's PDF is unusable (remembered across restarts), or None."""
        try:
            return self._bad_path(paper).read_text("utf-8").strip() or "unusable PDF"
        except OSError:
            return None

    def _remember_bad(self, paper: Paper, reason: str) -> None:
        path = self._bad_path(paper)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(reason + "\n", "utf-8")
        except OSError as exc:
            log.warning("PDF of %s: could not remember it as bad, %s", paper.versioned_id, exc)

    async def _once(self, key: str, make: Callable[[], Awaitable[T]]) -> T:
        """Run `make` once for concurrent callers with the same key; all of them get its result."""
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(make())
            self._inflight[key] = future
            future.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(future)  # type: ignore[return-value]

    # --- download ----------------------------------------------------------------------------

    async def get_pdf(self, paper: Paper) -> Path | None:
        """The cached PDF, downloaded first if needed; None (and one warning) when it cannot be had."""
        path = self.pdf_path(paper)
        if path.is_file():
            return path
        failed = self._failed.get(path.name)
        if failed is not None and time.monotonic() - failed[0] < self.retry_failed_after:
            return None
        result = await self._once("pdf:" + path.name, lambda: self._download(paper, path))
        if isinstance(result, Path):
            self._failed.pop(path.name, None)
            return result
        self._failed[path.name] = (time.monotonic(), result)
        return None

    def _download_may_succeed_later(self, paper: Paper) -> bool:
        """After get_pdf gave None: whether the failure may pass (timeout, network, 5xx)."""
        failed = self._failed.get(self.pdf_path(paper).name)
        return failed is None or failed[1]

    async def _download(self, paper: Paper, path: Path) -> Path | bool:
        """The file, or whether the failure may pass (True for a timeout, network trouble, a 5xx)."""
        if not paper.pdf_url:
            log.warning("PDF of %s: no PDF link in its arXiv entry", paper.versioned_id)
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
        try:
            await self._fetch(paper.pdf_url, part)
            os.replace(part, path)
            return path
        except (PdfError, httpx.HTTPError, TimeoutError, OSError) as exc:
            log.warning("PDF of %s: %s", paper.versioned_id, _describe(exc, self.timeout))
            return _transient(exc)
        finally:
            part.unlink(missing_ok=True)

    async def _fetch(self, url: str, dest: Path) -> None:
        """Download `url` to `dest` in at most `self.timeout` seconds of transfer.

        The time spent waiting for arXiv rate-limit slots does not count: in a burst the
        limiter alone can take minutes, and a healthy download must not time out in the queue.
        """
        limit = f"the limit is {self.max_bytes / 2**20:g} MB"
        loop = asyncio.get_running_loop()
        queued = 0.0  # seconds spent waiting for limiter slots
        started = loop.time()
        async with contextlib.AsyncExitStack() as stack:
            budget = await stack.enter_async_context(asyncio.timeout(None))
            # Redirects are followed here, each hop in its own limiter slot: arXiv sends
            # http:// PDF links to https://, and that is a second request to arXiv.
            for _ in range(_MAX_REDIRECTS + 1):
                budget.reschedule(None)
                waiting = loop.time()
                await self.limiter.wait()
                queued += loop.time() - waiting
                budget.reschedule(started + queued + self.timeout)
                resp = await stack.enter_async_context(
                    self._http.stream("GET", url, follow_redirects=False)
                )
                if not resp.is_redirect or "Location" not in resp.headers:
                    break
                await resp.aclose()
                url = str(resp.url.join(resp.headers["Location"]))
            else:
                raise PdfError(f"more than {_MAX_REDIRECTS} redirects")
            resp.raise_for_status()
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise PdfError(f"PDF too large: {int(declared) / 2**20:.1f} MB announced, {limit}")
            size = 0
            head = b""
            with dest.open("wb") as out:
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise PdfError(f"PDF too large: more than {self.max_bytes} bytes sent, {limit}")
                    if len(head) < len(_MAGIC):
                        head += chunk[: len(_MAGIC)]
                        if len(head) >= len(_MAGIC) and not head.startswith(_MAGIC):
                            raise PdfError(f"not a PDF (starts with {head[:16]!r})", transient=True)
                    out.write(chunk)
        if size == 0:
            raise PdfError("empty download", transient=True)
        if not head.startswith(_MAGIC):
            raise PdfError(f"not a PDF (starts with {head!r})", transient=True)

    # --- derived -----------------------------------------------------------------------------

    def _workers(self) -> ProcessPool:
        if self._closed:
            raise RuntimeError("PdfService is closed")
        if self._pool is None or not self._pool.active:
            self._pool = ProcessPool(
                max_workers=self.workers,
                initializer=_limit_memory,
                initargs=(self.memory_limit,),
                context=_mp_context(),
            )
        return self._pool

    def _drop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()

    async def _schedule(self, job: Callable[[str, int], T], pdf: Path, arg: int) -> T:
        try:
            future = self._workers().schedule(job, (str(pdf), arg), timeout=self.job_timeout)
        except RuntimeError:  # "the pool is not running": it broke since the last job
            if self._closed:
                raise
            self._drop_pool()
            future = self._workers().schedule(job, (str(pdf), arg), timeout=self.job_timeout)
        return await asyncio.wrap_future(future)

    async def _job(self, what: str, paper: Paper, job: Callable[[str, int], T], pdf: Path, arg: int) -> T:
        """`job(pdf, arg)` in a worker process; a failure that will not change raises _Unusable.

        A job past its time limit, a worker that dies (PDFium's SIGABRT, a segfault, the memory
        limit) and a PdfError leave the paper remembered as bad, with one warning. Any other
        exception is raised as it is (not remembered: it may be ours).
        """
        try:
            try:
                return await self._schedule(job, pdf, arg)
            except BrokenProcessPool:
                if self._closed:
                    raise
                # The pool itself broke, not this job (whose own crash is ProcessExpired): pebble
                # gives up a pool whose workers died outside a job (the OOM killer, an operator)
                # and fails the jobs queued in it. Once more on a new pool.
                self._drop_pool()
                return await self._schedule(job, pdf, arg)
        except PdfError as exc:
            reason = str(exc)
        except TimeoutError:
            reason = f"PDF work killed after {self.job_timeout:g} s (time limit)"
        except ProcessExpired as exc:
            reason = f"the PDF worker died ({_signal_name(exc.exitcode)}): a PDFium crash or the memory limit"
        except MemoryError:
            limit = f" of {self.memory_limit / 2**20:g} MB" if self.memory_limit else ""
            reason = f"the PDF needs more than the memory limit{limit}"
        log.warning("%s of %s: none, %s", what, paper.versioned_id, reason)
        self._remember_bad(paper, reason)
        raise _Unusable(reason)

    async def thumbnails(self, paper: Paper, max_images: int = 4) -> list[Path]:
        """Up to `max_images` JPEGs of the paper's figures (or its first page), best first; cached."""
        folder = self.image_dir(paper)
        if not folder.is_dir() and self.bad_reason(paper) is None:
            await self._once("img:" + folder.name, lambda: self._make_thumbnails(paper, folder, max(max_images, 4)))
        if not folder.is_dir():
            return []
        files = sorted(folder.glob("fig*.jpg"), key=lambda p: int(p.stem[3:]) if p.stem[3:].isdigit() else 0)
        return files[:max_images]

    async def _make_thumbnails(self, paper: Paper, folder: Path, max_images: int) -> None:
        pdf = await self.get_pdf(paper)
        if pdf is None:
            return
        try:
            jpegs = await self._job("thumbnails", paper, self.figures_job, pdf, max_images)
        except _Unusable:
            jpegs = []  # the file will not change: remember that it has no images
        except Exception as exc:  # noqa: BLE001 - a hostile PDF must not take the bot down
            log.warning("thumbnails of %s: none, %s", paper.versioned_id, _describe(exc, self.job_timeout))
            return
        # Written aside and moved in whole: a reader sees all of the images or none.
        staging = folder.with_name(f"{folder.name}.{secrets.token_hex(4)}.tmp")
        try:
            staging.mkdir(parents=True)
            for i, data in enumerate(jpegs, 1):
                (staging / f"fig{i}.jpg").write_bytes(data)
            os.replace(staging, folder)
        except OSError as exc:
            if not folder.is_dir():  # else another process got there first, which is fine
                log.warning("thumbnails of %s: not cached, %s", paper.versioned_id, exc)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    async def first_pages_text(self, paper: Paper, token_budget: int = 6000) -> str | None:
        """The paper's text up to the references, about `token_budget` tokens (4 characters each)."""
        return (await self.paper_text(paper, token_budget)).text

    async def paper_text(self, paper: Paper, token_budget: int = 6000) -> PaperText:
        """`first_pages_text`, and when there is none, whether it may come later (`retry`).

        The summary service's text source: a summary made while the download failed for a
        passing reason is made again when the text can be had.
        """
        if self.bad_reason(paper) is not None:
            return PaperText(None)
        pdf = await self.get_pdf(paper)
        if pdf is None:
            return PaperText(None, retry=self._download_may_succeed_later(paper))
        try:
            text = await self._job("text", paper, self.text_job, pdf, token_budget * 4)
        except _Unusable:
            return PaperText(None)
        except Exception as exc:  # noqa: BLE001 - a hostile PDF must not take the bot down
            log.warning("text of %s: none, %s", paper.versioned_id, _describe(exc, self.job_timeout))
            return PaperText(None, retry=True)
        if not text.strip():
            log.warning("text of %s: none, the PDF has no text layer", paper.versioned_id)
            return PaperText(None)
        return PaperText(text)

    async def aclose(self) -> None:
        """Stop at once: running downloads are cancelled and the workers killed, even mid-job."""
        self._closed = True
        for future in list(self._inflight.values()):
            future.cancel()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()  # terminates the workers, whatever they are doing
            await asyncio.to_thread(pool.join, 5)
        if self._own_http:
            await self._http.aclose()
