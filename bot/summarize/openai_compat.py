"""Any OpenAI-compatible chat completions API through the official `openai` package (`ChatModel`).

OpenAI itself, Ollama, vLLM, LM Studio, DeepSeek, OpenRouter: `POST {base_url}/chat/completions`.
Retries, parsing and the prompt are `bot.summarize.llm`'s, shared with every backend; the SDK's
own retries are off.

Structured output: `response_format` of type `json_schema` with `strict: true`, the schema made
strict-compatible by the SDK's own `to_strict_json_schema` (the transform its `parse()` helper
applies: `additionalProperties: false` and every property required on every object). OpenAI
guarantees schema-conforming output only in strict mode, and strict mode rejects a schema
without those two properties; Ollama, vLLM and LM Studio use the same schema for guided decoding
and ignore `strict`. A server that refuses `json_schema` with a 400 naming it (older Ollama and
vLLM, some proxies, models without structured outputs) gets `json_object` with the schema in the
prompt instead, from then on for the life of the model object (one per process in the app).
Either reply goes through the same validation, repair and retries.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
from pydantic import BaseModel, SecretStr

from bot.config import is_loopback_url, url_password
from bot.logs import RedactingFilter
from bot.summarize.base import Completion, SummarizerError, TransientLLMError, Usage
from bot.summarize.llm import LlmSummarizer, UsageHook

_strict_schema: Callable[[type[BaseModel]], dict[str, Any]] | None
try:  # the SDK's schema transform for strict structured outputs (used by its own `parse()`)
    from openai.lib._pydantic import to_strict_json_schema as _strict_schema
except ImportError:  # pragma: no cover - a future SDK that moved it: non-strict mode with the plain schema
    _strict_schema = None

log = logging.getLogger(__name__)

# Sent as the key to servers that need none: the SDK insists on one, and the header is dropped anyway.
_NO_KEY = "no-key"
_RETRY_STATUS = frozenset({408, 409, 429})  # timeout, conflict (OpenAI: "retry"), rate limit


def response_format_for(schema: type[BaseModel]) -> dict[str, Any]:
    """The `json_schema` response_format for a pydantic model, strict when the SDK can make it so."""
    if _strict_schema is not None:
        return {
            "type": "json_schema",
            "json_schema": {"name": schema.__name__, "schema": _strict_schema(schema), "strict": True},
        }
    return {
        "type": "json_schema",
        "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema(), "strict": False},
    }


def json_object_prompt(prompt: str, schema: type[BaseModel]) -> str:
    """The prompt for `json_object` mode: the schema in words (OpenAI also wants the word JSON in it)."""
    return (
        f"{prompt.rstrip()}\n\nReply with one JSON object only, no prose and no code fence, "
        f"that matches this JSON schema:\n{json.dumps(schema.model_json_schema(), ensure_ascii=False)}\n"
    )


def refuses_json_schema(exc: openai.APIStatusError) -> bool:
    """A 400 that names the response_format or json_schema: the server does not do structured outputs."""
    if exc.status_code != 400:
        return False
    text = f"{exc.message} {getattr(exc, 'param', '') or ''}".lower()
    return "response_format" in text or "json_schema" in text


_BASE_URL_HINT = (
    "Set OPENAI_BASE_URL to the API's base, which usually ends in /v1 and never in /chat/completions "
    "(e.g. http://localhost:11434/v1 for Ollama, https://api.openai.com/v1)"
)


def _is_api_error(exc: openai.APIStatusError) -> bool:
    """An error body as OpenAI-compatible APIs send it (`{"error": {"message": ...}}`), not a web
    server's page: the SDK hands the inner object over as the body."""
    return isinstance(exc.body, dict) and isinstance(exc.body.get("message"), str)


def _names_param(exc: openai.APIStatusError, param: str) -> bool:
    """A 400 about one request parameter: OpenAI names it in `param`, other servers in the message."""
    named = getattr(exc, "param", None)
    return named == param if named else f"'{param}'" in str(exc.message)


def retry_after(headers: httpx.Headers | None, *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms` (OpenAI), else `Retry-After` (seconds or
    an HTTP date, RFC 9110 10.2.3); None when neither is there or readable."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class OpenAIModel:
    """`ChatModel` for an OpenAI-compatible server: one chat completion with a JSON reply."""

    vendor = "OpenAI-compatible API"

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key: SecretStr | None = None,
        timeout: float = 90.0,
        temperature: float | None = 0.3,
    ) -> None:
        self.model = model
        self.model_key = f"openai:{model}"
        self.temperature = temperature
        self._secret = api_key.get_secret_value() if api_key is not None else ""
        # A proxy's password in the URL's userinfo is as secret as the key.
        # The logs' own redaction, for error texts: the key and a password in the URL.
        self._redactor = RedactingFilter(x for x in (self._secret, url_password(base_url)) if x)
        self._host = urlsplit(base_url).netloc.rpartition("@")[2]  # never a user:password@ part
        self._path = urlsplit(base_url).path.rstrip("/")
        self._json_schema = True  # until the server refuses it
        if urlsplit(base_url).scheme == "http" and not is_loopback_url(base_url):
            log.warning(
                "OPENAI_BASE_URL is plain http to %s, not a loopback address: prompts%s travel in clear text; "
                "use https unless the network is yours",
                self._host, " and the API key" if self._secret else "",
            )
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=self._secret or _NO_KEY,
            timeout=timeout,
            # One attempt per call inside the SDK: the retry policy lives in bot.summarize.llm.
            max_retries=0,
        )
        # Keyless local servers get no Authorization header at all, rather than a made-up key.
        self._headers: dict[str, Any] = {} if self._secret else {"Authorization": openai.omit}

    async def complete(self, prompt: str, schema: type[BaseModel]) -> Completion:
        try:
            response = await self._ask(prompt, schema)
        except openai.APIStatusError as exc:
            detail = self._detail(exc)
            if exc.status_code in _RETRY_STATUS or exc.status_code >= 500:
                raise TransientLLMError(detail, retry_after=retry_after(exc.response.headers)) from None
            if exc.status_code == 404 and not _is_api_error(exc):
                # Not the API's own "no such model" but no API at all under that path.
                detail += f" ({self._path}/chat/completions is not an API endpoint there). {_BASE_URL_HINT}"
            raise SummarizerError(f"{self.vendor} at {self._host} refused the request: {detail}") from None
        except openai.APITimeoutError:
            raise TransientLLMError("no answer (timeout)") from None
        except openai.APIConnectionError as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "connection failed"
            raise TransientLLMError(f"no answer ({cause})") from None
        except openai.APIResponseValidationError:
            raise TransientLLMError("a response body that is not a chat completion") from None
        return self._completion(response)

    async def _ask(self, prompt: str, schema: type[BaseModel]) -> Any:
        """One request. A server that refuses `json_schema`, or a model that takes no `temperature`
        (OpenAI's reasoning models accept only the default), is asked again at once without it,
        and never again with it (concurrent requests may each learn it; it is logged once)."""
        while True:
            json_schema, temperature = self._json_schema, self.temperature
            try:
                if json_schema:
                    return await self._create(prompt, response_format_for(schema), temperature)
                return await self._create(json_object_prompt(prompt, schema), {"type": "json_object"}, temperature)
            except openai.BadRequestError as exc:
                if temperature is not None and _names_param(exc, "temperature"):
                    if self.temperature is not None:
                        self.temperature = None
                        log.warning(
                            "%s at %s takes no temperature for %s (%s); using the model's default from now on",
                            self.vendor, self._host, self.model, self._detail(exc),
                        )
                elif json_schema and refuses_json_schema(exc):
                    if self._json_schema:
                        self._json_schema = False
                        log.warning(
                            "%s at %s refuses response_format json_schema (%s); using json_object with the "
                            "schema in the prompt from now on", self.vendor, self._host, self._detail(exc),
                        )
                else:
                    raise

    async def _create(self, prompt: str, response_format: dict[str, Any], temperature: float | None) -> Any:
        return await self._client.chat.completions.create(  # type: ignore[call-overload]
            model=self.model,
            messages=[{"role": "user", "content": prompt}],
            response_format=response_format,
            temperature=openai.omit if temperature is None else temperature,
            extra_headers=self._headers,
        )

    def _completion(self, response: Any) -> Completion:
        # A 200 that is not a chat completion (a proxy's page) comes back as a str or an odd object.
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list):
            raise TransientLLMError("a response body that is not a chat completion")
        usage = getattr(response, "usage", None)
        tokens = Usage(
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )
        message = choices[0].message if choices else None
        refusal = getattr(message, "refusal", None)
        if refusal:
            # The model declined (OpenAI's structured-output refusal): asking again gets the same answer.
            raise SummarizerError(f"the model {self.model} declined: {self._redact(str(refusal))[:300]}")
        cut_off = bool(choices) and getattr(choices[0], "finish_reason", None) == "length"
        return Completion((message.content if message else None) or "", tokens, cut_off)

    def _detail(self, exc: openai.APIStatusError) -> str:
        """`HTTP 429 rate_limit_exceeded: Rate limit reached ...` from OpenAI's error body, key removed."""
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") if isinstance(body.get("message"), str) else None
        if message is None:
            message = exc.message if not isinstance(exc.body, dict) else json.dumps(exc.body)[:300]
        code = getattr(exc, "code", None) or getattr(exc, "type", None)
        head = f"HTTP {exc.status_code} {code}" if code else f"HTTP {exc.status_code}"
        return self._redact(f"{head}: {message}")[:500]

    def _redact(self, text: str) -> str:
        return self._redactor.redact(text)

    async def aclose(self) -> None:
        await self._client.close()


class OpenAISummarizer(LlmSummarizer):
    """The summarizer on an OpenAI-compatible server, under the shared retry policy."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key: SecretStr | None = None,
        timeout: float = 90.0,
        attempts: int = 4,
        backoff_base: float = 2.0,
        on_usage: UsageHook | None = None,
    ) -> None:
        super().__init__(
            OpenAIModel(model, base_url=base_url, api_key=api_key, timeout=timeout),
            attempts=attempts,
            backoff_base=backoff_base,
            on_usage=on_usage,
        )
