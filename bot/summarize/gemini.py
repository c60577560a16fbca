"""Gemini through google-genai: one attempt of one JSON completion (`ChatModel`).

Retries, parsing and the prompt are `bot.summarize.llm`'s, shared with every backend.
"""

from __future__ import annotations

import importlib
import logging
import re
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import BaseModel, SecretStr

from bot.logs import RedactingFilter
from bot.summarize.base import Completion, SummarizerError, TransientLLMError, Usage
from bot.summarize.llm import LlmSummarizer

log = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({408, 429})


def _transport_errors() -> tuple[type[BaseException], ...]:
    # google-genai talks through aiohttp when it is installed, else through httpx2.
    found: list[type[BaseException]] = [TimeoutError, ConnectionError]
    for module, name in (("aiohttp", "ClientError"), ("httpx", "TransportError"), ("httpx2", "TransportError")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


_TRANSPORT_ERRORS = _transport_errors()
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)s\s*")  # google.protobuf.Duration in JSON: "18.9s"


def retry_delay(body: Any, headers: Any = None) -> float | None:
    """The wait in seconds a Google API error asks for, or None.

    `body` is the error's JSON: `{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
    "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "18.9s"}]}}`
    (Gemini's quota errors carry one). Failing that, an HTTP `Retry-After` in seconds.
    """
    error = body.get("error", body) if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for item in details if isinstance(details, list) else []:
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        m = _DURATION.fullmatch(delay) if isinstance(delay, str) else None
        if m:
            return float(m.group(1))
    after = headers.get("Retry-After") if headers is not None and hasattr(headers, "get") else None
    if isinstance(after, str) and after.strip().isdigit():
        return float(after.strip())
    return None


class GeminiModel:
    """`ChatModel` for Gemini: structured output with the schema as `response_schema`."""

    vendor = "Gemini"

    def __init__(self, api_key: SecretStr, model: str, *, base_url: str | None = None, timeout: float = 90.0) -> None:
        self.model = model
        self.model_key = f"gemini:{model}"
        self._secret = api_key.get_secret_value()
        self._redactor = RedactingFilter([self._secret])  # the logs' own redaction, for error texts
        self._client = genai.Client(
            api_key=self._secret,
            http_options=types.HttpOptions(
                base_url=base_url,
                timeout=int(timeout * 1000),
                # One attempt per call inside the SDK: the retry policy lives in bot.summarize.llm.
                retry_options=types.HttpRetryOptions(attempts=1),
            ),
        )

    async def complete(self, prompt: str, schema: type[BaseModel]) -> Completion:
        config = types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=schema, temperature=0.3
        )
        try:
            response = await self._client.aio.models.generate_content(model=self.model, contents=prompt, config=config)
        except genai_errors.APIError as exc:
            detail = self._redact(f"HTTP {exc.code} {exc.status or ''} {exc.message or ''}".strip())
            if exc.code in _RETRY_STATUS or exc.code >= 500:
                wait = retry_delay(exc.details, getattr(exc.response, "headers", None))
                raise TransientLLMError(detail, retry_after=wait) from None
            raise SummarizerError(f"Gemini refused the request: {detail}") from None
        except genai_errors.UnknownApiResponseError:
            raise TransientLLMError("a response body that is not JSON") from None
        except _TRANSPORT_ERRORS as exc:
            raise TransientLLMError(f"no answer ({type(exc).__name__})") from None
        except ValueError as exc:  # a 200 whose body is not JSON, or JSON of the wrong shape
            raise TransientLLMError(f"an unreadable reply ({type(exc).__name__})") from None
        meta = response.usage_metadata
        usage = Usage(
            input_tokens=(meta.prompt_token_count or 0) if meta else 0,
            output_tokens=(meta.candidates_token_count or 0) if meta else 0,
        )
        candidates = response.candidates or []
        cut_off = bool(candidates) and candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
        return Completion(response.text or "", usage, cut_off)

    def _redact(self, text: str) -> str:
        return self._redactor.redact(text)

    async def aclose(self) -> None:
        await self._client.aio.aclose()


class GeminiSummarizer(LlmSummarizer):
    """The summarizer on Gemini, under the shared retry policy."""

    def __init__(
        self,
        api_key: SecretStr,
        model: str,
        *,
        base_url: str | None = None,
        timeout: float = 90.0,
        attempts: int = 4,
        backoff_base: float = 2.0,
    ) -> None:
        super().__init__(
            GeminiModel(api_key, model, base_url=base_url, timeout=timeout), attempts=attempts, backoff_base=backoff_base
        )
