from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ARXIV_MIN_INTERVAL, ConfigError, load_settings


def test_defaults_match_spec() -> None:
    s = load_settings()
    assert s.telegram_bot_token is None and s.discord_bot_token is None and s.gemini_api_key is None
    assert s.telegram_api_base_url == "https://api.telegram.org"
    assert s.gemini_model == "gemini-2.5-flash"
    assert s.summarizer == "auto" and s.model_name == "extractive"
    assert s.arxiv_api_url == "https://export.arxiv.org/api/query"
    assert s.arxiv_rss_url == "https://rss.arxiv.org/rss"
    assert s.db_path == Path("data/paperbot.db") and s.cache_dir == Path("data/cache")
    assert (s.timezone, s.push_time, s.language) == ("UTC", "09:00", "en")
    assert (s.poll_minutes, s.summary_quota, s.max_topics, s.log_level) == (60, 20, 20, "INFO")


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("PAPERBOT_PUSH_TIME", "25:00", "PAPERBOT_PUSH_TIME"),
        ("PAPERBOT_TIMEZONE", "Mars/Base", "PAPERBOT_TIMEZONE"),
        ("PAPERBOT_POLL_MINUTES", "often", "PAPERBOT_POLL_MINUTES"),
        ("SUMMARIZER", "gpt", "SUMMARIZER"),
        ("ARXIV_API_URL", "ftp://x", "ARXIV_API_URL"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
    ],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert fragment in str(info.value)


def test_secrets_are_hidden_and_gemini_selected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-very-secret")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:telegram-secret")
    s = load_settings()
    assert "very-secret" not in repr(s) and "telegram-secret" not in str(s)
    assert s.model_name == "gemini:gemini-2.5-flash"


def test_gemini_without_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUMMARIZER", "gemini")
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        load_settings()


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PAPERBOT_LANGUAGE=zh\nPAPERBOT_PUSH_TIME=7:30\n")
    with pytest.raises(ConfigError, match="PAPERBOT_PUSH_TIME"):
        load_settings()
    (tmp_path / ".env").write_text("PAPERBOT_LANGUAGE=zh\nPAPERBOT_PUSH_TIME=07:30\n")
    s = load_settings()
    assert (s.language, s.push_time) == ("zh", "07:30")


def test_arxiv_interval_cannot_go_below_arxiv_rule_for_arxiv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPERBOT_ARXIV_INTERVAL", "0")
    assert load_settings().arxiv_interval == ARXIV_MIN_INTERVAL
    monkeypatch.setenv("ARXIV_API_URL", "http://127.0.0.1:9/api/query")
    monkeypatch.setenv("ARXIV_RSS_URL", "http://127.0.0.1:9/rss")
    assert load_settings().arxiv_interval == 0


def test_language_is_normalized_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPERBOT_LANGUAGE", "Chinese")
    assert load_settings().language == "zh"
    monkeypatch.setenv("PAPERBOT_LANGUAGE", "pt-BR (Brasil)")
    with pytest.raises(ConfigError, match="PAPERBOT_LANGUAGE"):
        load_settings()


def test_a_zone_directory_is_not_a_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPERBOT_TIMEZONE", "America")
    with pytest.raises(ConfigError, match="PAPERBOT_TIMEZONE"):
        load_settings()
