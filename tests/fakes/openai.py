"""A fake OpenAI-compatible chat completions API on 127.0.0.1 for the real `openai` client.

With `AsyncOpenAI(base_url=f"{fake.url}/v1")` the client sends `POST /v1/chat/completions` with a
JSON body of `model`, `messages`, `response_format` and `temperature`, and the key as
`Authorization: Bearer <key>`. Replies have the shape of OpenAI's: a `chat.completion` object whose
`choices[0].message.content` holds the model's text, next to `finish_reason` and `usage`
(`prompt_tokens`, `completion_tokens`, `total_tokens`); errors are OpenAI's
`{"error": {"message", "type", "param", "code"}}` bodies, 429s with `retry-after` headers.

Like OpenAI, `json_object` mode needs the word "json" in the messages (else a 400). `refuse_json_schema`
makes it a server without structured outputs: a `json_schema` response_format gets the 400 OpenAI
sends for models without it; models in `default_temperature_only` refuse a `temperature` as OpenAI's
reasoning models do. `models` (when set) are the only ones it knows: others get a 404.
`expected_key` turns another key, or none, into a 401.

Knobs: `script(*replies)` queues replies, consumed one per call; without one, `default` answers
(None: a valid summary built from the prompt, echoing its target language and title).
`FakeOpenAI.error(status)`, `.text(raw)` and `.content(dict)` build replies; each may carry a `delay`.
Records: `calls`, `bodies`, `prompts`, `auth` (the Authorization header or None), `paths`, and
`usage`, the (prompt_tokens, completion_tokens) of every completion it returned.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.gemini import summary_for
from tests.fakes.server import ThreadedServer

# (type, code, message) as api.openai.com sends them.
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key",
          "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded",
          "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later"),
}

REFUSE_JSON_SCHEMA = "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model."


@dataclass
class Reply:
    status: int = 200
    text: str | None = None  # the model's text; None: a valid summary built from the prompt
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    finish_reason: str = "stop"
    refusal: str | None = None
    raw_body: str | None = None  # sent as it is, e.g. a proxy's HTML page
    usage: bool = True  # some servers send no usage


def _error(status: int, message: str | None = None, *, param: str | None = None,
           headers: dict[str, str] | None = None, delay: float = 0.0) -> Reply:
    kind, code, default = _ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None,
                                               "Error."))
    body = {"message": message or default, "type": kind, "param": param, "code": code}
    return Reply(status, error=body, headers=headers or {}, delay=delay)


class FakeOpenAI:
    def __init__(self) -> None:
        self.default: Reply | None = None
        self.expected_key: str | None = None
        self.models: set[str] | None = None
        self.refuse_json_schema = False
        self.default_temperature_only: set[str] = set()  # models that, like OpenAI's o-series, take no temperature
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.paths: list[str] = []
        self.usage: list[tuple[int, int]] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self.server = ThreadedServer(app)

    # --- building replies ----------------------------------------------------------------

    error = staticmethod(_error)

    @staticmethod
    def rate_limited(*, retry_after: str | None = None, retry_after_ms: str | None = None) -> Reply:
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = retry_after
        if retry_after_ms is not None:
            headers["retry-after-ms"] = retry_after_ms
        return _error(429, headers=headers)

    @staticmethod
    def text(raw: str, *, delay: float = 0.0, finish_reason: str = "stop") -> Reply:
        return Reply(text=raw, delay=delay, finish_reason=finish_reason)

    @staticmethod
    def content(data: dict[str, Any], *, delay: float = 0.0) -> Reply:
        return Reply(text=json.dumps(data, ensure_ascii=False), delay=delay)

    @staticmethod
    def valid(*, delay: float = 0.0, usage: bool = True) -> Reply:
        return Reply(delay=delay, usage=usage)

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    # --- what was asked ------------------------------------------------------------------

    @property
    def calls(self) -> int:
        return len(self.bodies)

    @property
    def prompts(self) -> list[str]:
        return ["".join(str(m.get("content", "")) for m in b.get("messages", [])) for b in self.bodies]

    # --- the endpoint --------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        auth = request.headers.get("Authorization")
        with self._lock:
            self.bodies.append(body)
            self.auth.append(auth)
            self.paths.append(request.path)
            prompt = self.prompts[-1]
            # A request the server refuses outright does not consume a scripted reply.
            reply = self._refusal(body, auth, prompt)
            if reply is None:
                reply = self._queue.popleft() if self._queue else (self.default or Reply())
        await asyncio.sleep(reply.delay)
        if reply.error is not None:
            return web.json_response({"error": reply.error}, status=reply.status, headers=reply.headers)
        if reply.raw_body is not None:
            return web.Response(text=reply.raw_body, status=reply.status, content_type="text/html")
        text = reply.text
        if text is None and reply.refusal is None:
            text = json.dumps(summary_for(prompt), ensure_ascii=False)
        prompt_tokens, completion_tokens = len(prompt) // 4, len(text or "") // 4
        with self._lock:
            self.usage.append((prompt_tokens, completion_tokens))
        completion: dict[str, Any] = {
            "id": f"chatcmpl-fake{self.calls}",
            "object": "chat.completion",
            "created": 1714608000,
            "model": body.get("model"),
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": reply.refusal},
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
        }
        if reply.usage:
            completion["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            }
        return web.json_response(completion, status=reply.status, headers=reply.headers)

    def _refusal(self, body: dict[str, Any], auth: str | None, prompt: str) -> Reply | None:
        fmt = body.get("response_format") or {}
        if self.expected_key is not None and auth != f"Bearer {self.expected_key}":
            return _error(401)
        if self.models is not None and body.get("model") not in self.models:
            return _error(404, f"The model `{body.get('model')}` does not exist or you do not have access to it.")
        temperature = body.get("temperature")
        if body.get("model") in self.default_temperature_only and temperature not in (None, 1):
            return Reply(400, error={
                "message": f"Unsupported value: 'temperature' does not support {temperature} with this model. "
                           "Only the default (1) value is supported.",
                "type": "invalid_request_error", "param": "temperature", "code": "unsupported_value"})
        if fmt.get("type") == "json_schema" and self.refuse_json_schema:
            return _error(400, REFUSE_JSON_SCHEMA, param="response_format")
        if fmt.get("type") == "json_object" and "json" not in prompt.lower():
            return _error(400, "'messages' must contain the word 'json' in some form, to use 'response_format' "
                               "of type 'json_object'.", param="messages")
        return None

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's root; the API's base URL (OPENAI_BASE_URL) is `base_url`."""
        return self.server.url

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/v1"

    def start(self) -> FakeOpenAI:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
