"""Settings from the environment and `.env`, with the names and defaults of SPEC.md."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# arXiv's terms ask for one request every three seconds; only a loopback endpoint
# (a test server or a local mirror) may be polled faster.
ARXIV_MIN_INTERVAL = 3.0

# SPEC's default for OPENAI_BASE_URL; the field stays None when unset so `auto` can tell.
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
# The Bot API's rule for setWebhook's secret_token: 1-256 characters A-Z, a-z, 0-9, _ and -.
_WEBHOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class ConfigError(Exception):
    """A setting has a bad value; the message names the variable."""


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_PASSWORD_PARAM = re.compile(r"[?&]password=([^&#\s]+)")
_USERINFO_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/{1,2}[^/@\s:]*:([^/@\s]+)@")


def url_password(url: str | None) -> str | None:
    """The password of a URL's userinfo (`https://user:password@host/...`), None when it has none.

    Proxies and PostgreSQL URLs carry secrets there; libraries (openai, httpx) log request URLs
    with it at DEBUG, so it is redacted like an API key.
    """
    if not url:
        return None
    # Not urlsplit: a URL kept in a Path ("postgresql:/user:pw@host/db") has lost one of its slashes.
    m = _USERINFO_PASSWORD.match(url) if "@" in url else None
    # libpq's URLs may also give it as a parameter: postgresql://bot@db/paperbot?password=...
    m = m or _PASSWORD_PARAM.search(url)
    return m[1] if m else None


def parse_hhmm(value: str) -> tuple[int, int]:
    """'09:00' -> (9, 0); raises ValueError with a hint for anything else."""
    m = _HHMM.match(value.strip())
    if not m:
        raise ValueError(f"{value!r} is not a time in 24-hour HH:MM form, e.g. 09:00 or 18:30")
    return int(m.group(1)), int(m.group(2))


def parse_listen(value: str) -> tuple[str, int]:
    """'0.0.0.0:8443' -> ('0.0.0.0', 8443); '[::]:9000' -> ('::', 9000); ValueError with an example otherwise."""
    host, sep, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port, e.g. 0.0.0.0:8443 or 127.0.0.1:9100")
    return host, int(port)


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "America" is a directory of zones
        raise ValueError(
            f"{value!r} is not an IANA time zone; use a name such as UTC, Europe/Berlin or Asia/Shanghai"
        ) from None
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    telegram_bot_token: SecretStr | None = Field(None, alias="TELEGRAM_BOT_TOKEN")
    telegram_api_base_url: str = Field("https://api.telegram.org", alias="TELEGRAM_API_BASE_URL")
    discord_bot_token: SecretStr | None = Field(None, alias="DISCORD_BOT_TOKEN")
    gemini_api_key: SecretStr | None = Field(None, alias="GEMINI_API_KEY")
    gemini_model: str = Field("gemini-2.5-flash", alias="GEMINI_MODEL")
    gemini_base_url: str | None = Field(None, alias="GEMINI_BASE_URL")
    summarizer: Literal["auto", "gemini", "openai", "extractive"] = Field("auto", alias="SUMMARIZER")
    openai_api_key: SecretStr | None = Field(None, alias="OPENAI_API_KEY")
    # None: unset (the default endpoint, see `openai_endpoint`); `auto` picks OpenAI only when it is set.
    openai_base_url: str | None = Field(None, alias="OPENAI_BASE_URL")
    openai_model: str | None = Field(None, alias="OPENAI_MODEL")
    arxiv_api_url: str = Field("https://export.arxiv.org/api/query", alias="ARXIV_API_URL")
    arxiv_rss_url: str = Field("https://rss.arxiv.org/rss", alias="ARXIV_RSS_URL")
    # A file path (SQLite), or a PostgreSQL URL kept as text (a Path would fold its `//`).
    db_path: Path | str = Field(Path("data/paperbot.db"), alias="PAPERBOT_DB")
    cache_dir: Path = Field(Path("data/cache"), alias="PAPERBOT_CACHE_DIR")
    timezone: str = Field("UTC", alias="PAPERBOT_TIMEZONE")
    push_time: str = Field("09:00", alias="PAPERBOT_PUSH_TIME")
    language: str = Field("en", alias="PAPERBOT_LANGUAGE")
    poll_minutes: int = Field(60, ge=1, le=24 * 60, alias="PAPERBOT_POLL_MINUTES")
    summary_quota: int = Field(20, ge=0, alias="PAPERBOT_SUMMARY_QUOTA")
    max_topics: int = Field(20, ge=1, le=500, alias="PAPERBOT_MAX_TOPICS")
    telegram_webhook_url: str | None = Field(None, alias="TELEGRAM_WEBHOOK_URL")
    telegram_webhook_listen: str = Field("0.0.0.0:8443", alias="TELEGRAM_WEBHOOK_LISTEN")
    telegram_webhook_secret: SecretStr | None = Field(None, alias="TELEGRAM_WEBHOOK_SECRET")
    metrics_listen: str | None = Field(None, alias="PAPERBOT_METRICS_LISTEN")
    log_level: Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"] = Field(
        "INFO", alias="LOG_LEVEL"
    )
    # Not in SPEC: seconds between arXiv requests. Fixed at arXiv's 3 s for arXiv itself;
    # only loopback endpoints (tests, local mirrors) may go lower.
    arxiv_interval: float = Field(ARXIV_MIN_INTERVAL, ge=0, alias="PAPERBOT_ARXIV_INTERVAL")
    # Not in SPEC: the largest PDF we download, in megabytes.
    pdf_max_mb: int = Field(40, ge=1, le=500, alias="PAPERBOT_PDF_MAX_MB")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @field_validator("summarizer", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        from bot.summarize.languages import normalize_language

        return normalize_language(v)

    @field_validator("push_time")
    @classmethod
    def _time(cls, v: str) -> str:
        h, m = parse_hhmm(v)
        return f"{h:02d}:{m:02d}"

    @field_validator("db_path", mode="before")
    @classmethod
    def _db(cls, v: object) -> object:
        if isinstance(v, str) and "://" in v:
            scheme = v.split("://", 1)[0].lower()
            if scheme not in ("postgresql", "postgres"):
                # The value is not repeated: a URL may hold a password.
                raise ValueError(
                    f"a URL must be a PostgreSQL one, postgresql://user:password@host:5432/dbname (got {scheme}://...);"
                    " or give an SQLite file path such as data/paperbot.db"
                )
            after = v.split("://", 1)[1]
            authority = re.split(r"[/?#]", after, maxsplit=1)[0]
            rest = after[len(authority):].split("?", 1)[0]  # the path
            userinfo = authority.rpartition("@")[0]
            if authority.count("@") > 1 or "@" in rest or re.search(r"%(?![0-9A-Fa-f]{2})", userinfo):
                # A raw @ or / in the password moves the host (and a driver's error then shows
                # pieces of the password): refused, and nothing of it repeated.
                raise ValueError(
                    "the user or password in the PostgreSQL URL holds a character that must be "
                    "percent-encoded: write @ as %40, / as %2F, : as %3A, % as %25, # as %23, ? as %3F, "
                    "e.g. postgresql://bot:p%40ss%2Fword@db:5432/paperbot"
                )
            try:
                parts = urlsplit(v)
                parts.port  # noqa: B018 - raises on a port that is not a number
            except ValueError:
                raise ValueError(
                    "not a valid PostgreSQL URL; expected postgresql://user:password@host:5432/dbname"
                ) from None
            if not parts.path.strip("/"):
                raise ValueError("the PostgreSQL URL names no database; expected postgresql://user:password@host:5432/dbname")
            return v
        return Path(v) if isinstance(v, str) else v

    @property
    def db_password(self) -> str | None:
        """The password inside a PostgreSQL `PAPERBOT_DB`, so that logs and errors can hide it."""
        return url_password(str(self.db_path))

    @field_validator("telegram_webhook_listen", "metrics_listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is not None:
            parse_listen(v)
        return v

    @field_validator("telegram_webhook_url")
    @classmethod
    def _webhook_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme != "https" or not parts.netloc:
            # Telegram only posts to HTTPS; TLS may end at a reverse proxy in front of the bot.
            # The value is not repeated: some put the bot token in the webhook's path.
            raise ValueError("must be an https URL (Telegram only posts to https), e.g. https://bot.example.org/telegram")
        return v

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _webhook_secret(cls, v: SecretStr | None) -> SecretStr | None:
        # The message never repeats the value: it is a secret.
        if v is not None and not _WEBHOOK_SECRET.match(v.get_secret_value()):
            raise ValueError("must be 1-256 characters from A-Z, a-z, 0-9, _ and -, e.g. the output of "
                             "python -c \"import secrets; print(secrets.token_urlsafe(32))\"")
        return v

    @field_validator(
        "telegram_bot_token", "discord_bot_token", "gemini_api_key", "openai_api_key", "openai_model",
        "telegram_webhook_secret", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, v: object) -> object:
        # Keys and names copied into a .env file bring spaces and line ends along; no key has them.
        if isinstance(v, str):
            return v.strip() or None
        return v

    @field_validator("gemini_base_url", "openai_base_url", "telegram_webhook_url", "metrics_listen", mode="before")
    @classmethod
    def _blank_url(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("telegram_api_base_url", "arxiv_api_url", "arxiv_rss_url", "gemini_base_url", "openai_base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _arxiv_interval(self) -> Settings:
        if self.arxiv_interval < ARXIV_MIN_INTERVAL and not (
            is_loopback_url(self.arxiv_api_url) and is_loopback_url(self.arxiv_rss_url)
        ):
            self.arxiv_interval = ARXIV_MIN_INTERVAL
        if self.summarizer == "gemini" and self.gemini_api_key is None:
            raise ValueError("SUMMARIZER=gemini needs GEMINI_API_KEY")
        if self.backend == "openai" and self.openai_model is None:
            why = "SUMMARIZER=openai" if self.summarizer == "openai" else "OPENAI_API_KEY or OPENAI_BASE_URL is set"
            raise ValueError(
                f"OPENAI_MODEL is not set, and the OpenAI-compatible backend needs it ({why}); "
                "set the model name, e.g. OPENAI_MODEL=gpt-4o-mini or OPENAI_MODEL=llama3.1"
            )
        return self

    @property
    def backend(self) -> Literal["gemini", "openai", "extractive"]:
        """The summarizer in use; SPEC's `auto`: Gemini with a Gemini key, else OpenAI-compatible when
        OPENAI_API_KEY or OPENAI_BASE_URL is set, else extractive."""
        if self.summarizer != "auto":
            return self.summarizer
        if self.gemini_api_key is not None:
            return "gemini"
        if self.openai_api_key is not None or self.openai_base_url is not None:
            return "openai"
        return "extractive"

    def secret_values(self) -> list[str]:
        """Every secret among the settings, for log redaction: tokens, keys and URL passwords."""
        keys = [
            self.telegram_bot_token, self.discord_bot_token, self.gemini_api_key, self.openai_api_key,
            self.telegram_webhook_secret,
        ]
        urls = [
            self.telegram_api_base_url, self.gemini_base_url, self.openai_base_url, str(self.db_path),
            self.telegram_webhook_url,
        ]
        passwords = [p for p in map(url_password, urls) if p is not None]
        # As written (logged URLs keep the encoding) and decoded (as a driver may show it).
        return [k.get_secret_value() for k in keys if k is not None] + passwords + [
            unquote(p) for p in passwords if unquote(p) != p
        ]

    @property
    def openai_endpoint(self) -> str:
        return self.openai_base_url or OPENAI_DEFAULT_BASE_URL

    @property
    def webhook_listen(self) -> tuple[str, int]:
        return parse_listen(self.telegram_webhook_listen)

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        return None if self.metrics_listen is None else parse_listen(self.metrics_listen)

    @property
    def model_name(self) -> str:
        if self.backend == "gemini":
            return f"gemini:{self.gemini_model}"
        if self.backend == "openai":
            return f"openai:{self.openai_model}"
        return "extractive"


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning pydantic's report into one line that names the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = err.get("loc") or ()
            name = str(loc[0]) if loc else ""
            field = Settings.model_fields.get(name)
            var = (field.alias if field and field.alias else name).upper()
            msg = err.get("msg", "invalid value").removeprefix("Value error, ")
            problems.append(f"{var}: {msg}" if var else msg)
        raise ConfigError("bad configuration: " + "; ".join(problems)) from None
