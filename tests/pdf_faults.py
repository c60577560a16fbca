"""Worker jobs for PdfService that misbehave on request, for the tests of the worker pool.

A PDF that carries the comment line `%fault:hang` or `%fault:abort` makes the job sleep for an
hour or abort its process (SIGABRT, as PDFium does on a failed allocation) before any PDFium
call; any other PDF goes through the real job. The functions live in a module of their own so
that a worker process can import them by name.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bot import pdf


def _fault(pdf_path: str) -> None:
    data = Path(pdf_path).read_bytes()
    if b"\n%fault:hang\n" in data:
        time.sleep(3600)
    if b"\n%fault:abort\n" in data:
        os.abort()


def figures(pdf_path: str, max_images: int) -> list[bytes]:
    _fault(pdf_path)
    return pdf._thumbnail_jpegs(pdf_path, max_images)


def text(pdf_path: str, max_chars: int) -> str:
    _fault(pdf_path)
    return pdf._text_job(pdf_path, max_chars)


def with_fault(data: bytes, fault: str) -> bytes:
    """A PDF with a fault marker: a comment line after its end, which every PDF reader ignores."""
    return data + b"\n%fault:" + fault.encode() + b"\n"
