from __future__ import annotations

import logging

import pytest

from bot.logs import RedactingFilter, setup_logging

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"


def test_token_and_key_never_reach_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("DEBUG", [TOKEN, "AIzaSyKEY-example-123"])
    log = logging.getLogger("paperbot.test")
    log.info("POST https://api.telegram.org/bot%s/getUpdates", TOKEN)
    log.warning("gemini said no for key=%s", "AIzaSyKEY-example-123")
    try:
        raise RuntimeError(f"boom {TOKEN}")
    except RuntimeError:
        log.exception("failed")
    # httpx's request lines are silenced below WARNING whatever the level
    logging.getLogger("httpx").info("HTTP Request: POST https://api.telegram.org/bot%s/x", TOKEN)
    err = capsys.readouterr().err
    assert TOKEN not in err and "AIzaSyKEY" not in err
    assert "getUpdates" in err and "boom ***" in err and "HTTP Request" not in err


def test_unknown_token_shapes_are_redacted_too() -> None:
    f = RedactingFilter([])
    assert "***" in f.redact(f"https://example.org/bot{TOKEN}/sendMessage")
    assert f.redact("GET /v1beta/models?key=abc123") == "GET /v1beta/models?key=***"


def test_a_malformed_log_call_does_not_raise_in_the_caller(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", [TOKEN])
    logging.getLogger("paperbot.test").info("value %d of %s", "x", TOKEN)
    err = capsys.readouterr().err
    assert "value %d" in err and TOKEN not in err
