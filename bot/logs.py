"""Logging that never shows a token or key, at any level."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

# A Telegram token inside a URL path (`/bot123456:ABC.../getUpdates`) or anywhere else.
_TELEGRAM_TOKEN = re.compile(r"(?<![0-9])\d{5,}:[A-Za-z0-9_-]{30,}")
_KEY_PARAM = re.compile(r"(?i)\b(key|api_key|token|x-goog-api-key)=([^&\s\"']+)")


class RedactingFilter(logging.Filter):
    """Replaces known secret values and token-shaped strings in every record."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = _TELEGRAM_TOKEN.sub("***", text)
        return _KEY_PARAM.sub(r"\1=***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call; logging itself would only complain, not raise
            message = f"{record.msg!r} {record.args!r}"
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        redacted = self.redact(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def setup_logging(level: str, secrets: Iterable[str] = ()) -> RedactingFilter:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    redactor = RedactingFilter(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request URL at INFO, and Telegram's URLs carry the token.
    for noisy in ("httpx", "httpcore", "telegram.ext.Updater", "discord.gateway", "urllib3", "arxiv"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return redactor
