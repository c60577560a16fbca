"""Build small PDFs by hand for the tests and the benchmark.

Writing the objects ourselves keeps every part in view: where a figure sits, whether it is an
image XObject, a Form XObject or bare paths on the page, which caption lies below it, and broken
variants (encrypted, truncated) that no library would produce on purpose.
"""

from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

Colour = tuple[int, int, int]
LETTER = (612.0, 792.0)


@dataclass
class Text:
    x: float
    y: float  # baseline, PDF units from the bottom
    text: str
    size: float = 10


@dataclass
class Raster:
    """An embedded RGB image drawn into the rectangle (x, y, w, h)."""

    x: float
    y: float
    w: float
    h: float
    colour: Colour
    px: tuple[int, int] = (400, 300)
    noise: float = 0  # sigma of grey noise blended in: photo-like content that compresses badly


@dataclass
class Vector:
    """A vector drawing; as a Form XObject (what pdfTeX makes of an included PDF) or as bare paths (TikZ)."""

    x: float
    y: float
    w: float
    h: float
    colour: Colour
    form: bool = True
    segments: int = 12  # polyline points of the "plot" inside the frame


@dataclass
class Page:
    items: list[Text | Raster | Vector] = field(default_factory=list)
    size: tuple[float, float] = LETTER
    rotate: int = 0  # the page's /Rotate: how a viewer turns it for display


def _esc(text: str) -> bytes:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")


def _rgb(c: Colour) -> str:
    return " ".join(f"{v / 255:.3f}" for v in c)


def raster_pixels(colour: Colour, px: tuple[int, int], noise: float = 0) -> Image.Image:
    """A light background with a solid block of `colour` and a dark diagonal: not uniform, so hashes differ."""
    w, h = px
    img = Image.new("RGB", px, (235, 235, 235))
    draw = ImageDraw.Draw(img)
    draw.rectangle((w // 8, h // 8, w * 7 // 8, h * 7 // 8), fill=colour)
    draw.line((0, 0, w, h), fill=(20, 20, 20), width=max(2, w // 50))
    if noise:
        img = Image.blend(img, Image.effect_noise(px, noise).convert("RGB"), 0.35)
    return img


def _plot_ops(v: Vector, x0: float, y0: float) -> str:
    """A framed plot: a filled block of the figure's colour, a frame and a zigzag polyline."""
    ops = [f"{_rgb(v.colour)} rg {x0 + v.w * 0.1:.2f} {y0 + v.h * 0.1:.2f} {v.w * 0.8:.2f} {v.h * 0.5:.2f} re f"]
    ops.append(f"0 0 0 RG 1 w {x0:.2f} {y0:.2f} {v.w:.2f} {v.h:.2f} re S")
    n = max(2, v.segments)
    pts = [(x0 + v.w * i / (n - 1), y0 + v.h * (0.65 + 0.25 * ((i * 7919) % 13) / 13)) for i in range(n)]
    ops.append(f"{pts[0][0]:.2f} {pts[0][1]:.2f} m " + " ".join(f"{x:.2f} {y:.2f} l" for x, y in pts[1:]) + " S")
    return "\n".join(ops)


class _Writer:
    def __init__(self) -> None:
        self.objects: list[bytes] = []

    def reserve(self) -> int:
        self.objects.append(b"")
        return len(self.objects)

    def set(self, num: int, body: bytes) -> int:
        self.objects[num - 1] = body
        return num

    def add(self, body: bytes) -> int:
        return self.set(self.reserve(), body)

    def stream(self, entries: str, data: bytes, compress: bool = True) -> int:
        if compress:
            data = zlib.compress(data)
            entries += " /Filter /FlateDecode"
        return self.add(b"<< " + entries.encode() + b" /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")

    def build(self, root: int, trailer_extra: str = "") -> bytes:
        out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for i, body in enumerate(self.objects, 1):
            offsets.append(len(out))
            out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
        xref = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(self.objects) + 1)
        out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
        out += f"trailer\n<< /Size {len(self.objects) + 1} /Root {root} 0 R {trailer_extra}>>\n".encode()
        out += b"startxref\n%d\n%%%%EOF\n" % xref
        return bytes(out)


def build_pdf(pages: list[Page], *, encrypt: bool = False) -> bytes:
    w = _Writer()
    font = w.add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    pages_num = w.reserve()
    kids = []
    for page in pages:
        xobjects: dict[str, int] = {}
        ops: list[str] = []
        for item in page.items:
            if isinstance(item, Text):
                text = _esc(item.text).decode("latin-1")
                ops.append(f"BT /F1 {item.size} Tf {item.x:.2f} {item.y:.2f} Td ({text}) Tj ET")
            elif isinstance(item, Raster):
                img = raster_pixels(item.colour, item.px, item.noise)
                name = f"Im{len(xobjects)}"
                xobjects[name] = w.stream(
                    f"/Type /XObject /Subtype /Image /Width {img.width} /Height {img.height}"
                    " /ColorSpace /DeviceRGB /BitsPerComponent 8",
                    img.tobytes(),
                )
                ops.append(f"q {item.w:.2f} 0 0 {item.h:.2f} {item.x:.2f} {item.y:.2f} cm /{name} Do Q")
            elif item.form:
                name = f"Fm{len(xobjects)}"
                xobjects[name] = w.stream(
                    f"/Type /XObject /Subtype /Form /BBox [0 0 {item.w:.2f} {item.h:.2f}]",
                    _plot_ops(item, 0, 0).encode(),
                )
                ops.append(f"q 1 0 0 1 {item.x:.2f} {item.y:.2f} cm /{name} Do Q")
            else:
                ops.append("q " + _plot_ops(item, item.x, item.y) + " Q")
        content = w.stream("", "\n".join(ops).encode("latin-1"))
        xobj = " ".join(f"/{k} {v} 0 R" for k, v in xobjects.items())
        kids.append(
            w.add(
                f"<< /Type /Page /Parent {pages_num} 0 R /MediaBox [0 0 {page.size[0]:g} {page.size[1]:g}]"
                f" /Rotate {page.rotate} /Resources << /Font << /F1 {font} 0 R >> /XObject << {xobj} >> >>"
                f" /Contents {content} 0 R >>".encode()
            )
        )
    w.set(pages_num, f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>".encode())
    root = w.add(f"<< /Type /Catalog /Pages {pages_num} 0 R >>".encode())
    extra = ""
    if encrypt:
        # Standard security handler, revision 2, with an /O and /U that no password opens:
        # the file can only be read with a password nobody has.
        enc = w.add(b"<< /Filter /Standard /V 1 /R 2 /O <" + b"ab" * 32 + b"> /U <" + b"cd" * 32 + b"> /P -4 >>")
        extra = f"/Encrypt {enc} 0 R /ID [<{'01' * 16}> <{'01' * 16}>] "
    return w.build(root, extra)


# --- ready-made papers ------------------------------------------------------------------------


def body_lines(n: int, seed: int = 0) -> list[str]:
    """Filler prose; no two lines alike, as in a real paper (repeated lines look like running headers)."""
    words = "model data result method figure network training sample error value layer signal".split()
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(11)) for _ in range(n)]


def text_page(lines: list[str], *, top: float = 740, x: float = 72, header: str | None = None,
              number: int | None = None, size: tuple[float, float] = LETTER) -> Page:
    """A page of body text from `top` down, with an optional running header and page number."""
    items: list[Text | Raster | Vector] = [Text(x, top - 12 * i, line) for i, line in enumerate(lines)]
    if header:
        items.append(Text(72, size[1] - 40, header, 8))
    if number is not None:
        items.append(Text(size[0] / 2, 30, str(number), 9))
    return Page(items, size)


def figure_page(fig: Raster | Vector, caption: str, *, lines: int = 12, seed: int = 0) -> Page:
    """Body text above (as much of `lines` as fits), the figure, its caption just below it, more text."""
    lines = max(0, min(lines, int((740 - fig.y - fig.h - 20) // 12) + 1))
    page = text_page(body_lines(lines, seed), top=740)
    page.items.append(fig)
    page.items.append(Text(fig.x, fig.y - 14, caption, 9))
    page.items += [Text(72, fig.y - 40 - 12 * i, line) for i, line in enumerate(body_lines(8, seed + 1))]
    return page


def paper(n_pages: int, figures: dict[int, tuple[Raster | Vector, str]] | None = None) -> bytes:
    """An `n_pages` paper; `figures` maps a 1-based page number to (figure, caption)."""
    figures = figures or {}
    pages = []
    for p in range(1, n_pages + 1):
        if p in figures:
            fig, caption = figures[p]
            pages.append(figure_page(fig, caption, lines=12, seed=p))
        else:
            pages.append(text_page(body_lines(50, p), top=740, number=p))
    return build_pdf(pages)


def deflated_zeros(megabytes: int) -> bytes:
    """A zlib stream that inflates to `megabytes` MiB of zero bytes, about 1/1000 of that in size.

    Built without compressing gigabytes: after a full flush the deflate state starts afresh,
    so the compressed form of one MiB of zeros can simply be repeated. The Adler-32 of n zero
    bytes is ((n mod 65521) << 16) | 1.
    """
    mib = b"\0" * 2**20
    z = zlib.compressobj(9)
    first = z.compress(mib) + z.flush(zlib.Z_FULL_FLUSH)  # with the zlib header
    again = z.compress(mib) + z.flush(zlib.Z_FULL_FLUSH)
    n = megabytes * 2**20
    return first + again * (megabytes - 1) + b"\x03\x00" + struct.pack(">I", ((n % 65521) << 16) | 1)


def compression_bomb(megabytes: int = 2048) -> bytes:
    """A one-page PDF whose content stream (FlateDecode) inflates to `megabytes` MiB of whitespace.

    2048 MiB is a 2 MB file. PDFium inflates the whole stream to read the page; without a memory
    limit that takes over 3 GB, and a bigger bomb makes PDFium abort (SIGABRT).
    """
    w = _Writer()
    pages = w.reserve()
    data = deflated_zeros(megabytes)
    content = w.add(b"<< /Filter /FlateDecode /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")
    page = w.add(
        f"<< /Type /Page /Parent {pages} 0 R /MediaBox [0 0 612 792] /Resources << >> /Contents {content} 0 R >>"
        .encode()
    )
    w.set(pages, f"<< /Type /Pages /Kids [{page} 0 R] /Count 1 >>".encode())
    return w.build(w.add(f"<< /Type /Catalog /Pages {pages} 0 R >>".encode()))
