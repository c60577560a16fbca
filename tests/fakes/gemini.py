"""A fake Gemini API on 127.0.0.1 for the real google-genai client.

With `HttpOptions(base_url=fake.url)` and an API key, google-genai 3.x sends
`POST {base_url}/{api_version}/models/{model}:generateContent` (api_version "v1" by default,
"v1beta" in older releases) with the key in the `x-goog-api-key` header and a JSON body of
`contents` and `generationConfig` (responseMimeType, responseSchema, temperature). Replies have
the shape of the real API: `candidates[0].content.parts[0].text` holds the model's text, next to
`finishReason`, `usageMetadata` and `modelVersion`; errors are Google's `{"error": {code, message,
status}}` bodies.

Knobs: `script(*replies)` queues replies, consumed one per call; without one, `default` answers
(None: a valid summary built from the request, echoing its target language and title).
`FakeGemini.error(status, retry_delay=...)`, `.text(raw)` and `.content(dict)` build replies; each may carry a
`delay`. `expected_key` turns a wrong key into the API's 400. Records: `calls`, `bodies`,
`prompts`, `keys`, `paths`, `usage` (the promptTokenCount and candidatesTokenCount of every reply
it sent), and `peak`, the most requests it was answering at once.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.server import ThreadedServer

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    403: ("PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established identity). "
          "Please use API Key or other form of API consumer identity to call this API."),
    404: ("NOT_FOUND", "models/unknown is not found for API version v1, or is not supported for generateContent."),
    429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
          "https://developers.generativeai.google/guide/troubleshooting"),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
}


@dataclass
class Reply:
    status: int = 200
    text: str | None = None  # the model's text; None: a valid summary built from the request
    error: dict[str, Any] | None = None
    delay: float = 0.0
    finish_reason: str = "STOP"
    raw_body: str | None = None  # sent as it is, e.g. a proxy's HTML page with status 200


_WORDS = ("one", "two", "three", "four")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 6]


def summary_for(prompt: str) -> dict[str, Any]:
    """A valid summary that shows what the prompt asked for: every text carries the target language,
    and each takeaway's evidence is a sentence copied from the prompt's abstract, as a faithful model's."""
    lang = _field(prompt, "Target language") or "?"
    title = _field(prompt, "Title") or "?"
    abstract = prompt.split("Abstract:\n", 1)[1].split("\n", 1)[0] if "Abstract:\n" in prompt else ""
    passages = _sentences(abstract) or [title]
    return {
        "title_translated": f"[{lang}] {title}",
        "summary": f"[{lang}] One sentence about {title}.",
        "key_takeaways": [f"[{lang}] Takeaway {word}." for word in _WORDS],
        "evidence": [passages[i % len(passages)] for i in range(len(_WORDS))],
        "keywords": [f"[{lang}] keyword", "fake"],
        "background": f"[{lang}] Background.",
        "prior_work": f"[{lang}] Prior work and its problems.",
        "method": [f"[{lang}] Step 1.", f"[{lang}] Step 2."],
        "results": f"[{lang}] Results.",
        "conclusion": f"[{lang}] Conclusion.",
        "affiliations": ["Fake University"],
        "code_url": None,
    }


def _asks_for_answer(body: dict[str, Any]) -> bool:
    """Whether the request's response schema is the /ask answer's (it has an `answer` property)."""
    return '"answer"' in json.dumps(body.get("generationConfig", {}))


def answer_for(prompt: str) -> dict[str, Any]:
    """A faithful answer to an /ask prompt: it names the question and quotes the first passage given.

    Passages are the prompt's lines "[n] text" (see bot/summarize/prompts/ask.txt).
    """
    lang = _field(prompt, "Target language") or "?"
    question = _field(prompt, "Question") or "?"
    passages = re.findall(r"^\[\d+\](?: \(p\. \d+\))? (.+)$", prompt, re.MULTILINE)
    quote = _sentences(passages[0])[0] if passages and _sentences(passages[0]) else (passages[0] if passages else "")
    return {"answer": f"[{lang}] The paper answers: {question}", "quotes": [quote] if quote else []}


def _prompt_of(body: dict[str, Any]) -> str:
    return "".join(p.get("text", "") for c in body.get("contents", []) for p in c.get("parts", []))


def _field(prompt: str, name: str) -> str | None:
    m = re.search(rf"^{re.escape(name)}: (.+)$", prompt, re.MULTILINE)
    return m.group(1).strip() if m else None


class FakeGemini:
    def __init__(self, model_version: str = "gemini-2.5-flash") -> None:
        self.model_version = model_version
        self.default: Reply | None = None
        self.expected_key: str | None = None
        self.bodies: list[dict[str, Any]] = []
        self.keys: list[str | None] = []
        self.paths: list[str] = []
        self.usage: list[tuple[int, int]] = []
        self.peak = 0
        self._in_flight = 0
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        app = web.Application()
        app.router.add_post("/{version}/models/{action}", self._handle)
        self.server = ThreadedServer(app)

    # --- building replies ----------------------------------------------------------------

    @staticmethod
    def error(status: int, message: str | None = None, *, delay: float = 0.0, retry_delay: str | None = None) -> Reply:
        """Google's error body; `retry_delay` ("18.9s") adds the details a real quota 429 carries."""
        name, default = _ERRORS.get(status, ("UNKNOWN", "Unknown error."))
        error: dict[str, Any] = {"code": status, "message": message or default, "status": name}
        if retry_delay is not None:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                            "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
                            "quotaValue": "10",
                        }
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.Help",
                 "links": [{"description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay},
            ]
        return Reply(status, error=error, delay=delay)

    @staticmethod
    def text(raw: str, *, delay: float = 0.0, finish_reason: str = "STOP") -> Reply:
        return Reply(text=raw, delay=delay, finish_reason=finish_reason)

    @staticmethod
    def content(data: dict[str, Any], *, delay: float = 0.0) -> Reply:
        return Reply(text=json.dumps(data, ensure_ascii=False), delay=delay)

    @staticmethod
    def valid(*, delay: float = 0.0) -> Reply:
        return Reply(delay=delay)

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    # --- what was asked ------------------------------------------------------------------

    @property
    def calls(self) -> int:
        return len(self.bodies)

    @property
    def prompts(self) -> list[str]:
        return [_prompt_of(b) for b in self.bodies]

    # --- the endpoint --------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        model, _, method = request.match_info["action"].partition(":")
        body = await request.json()
        key = request.headers.get("x-goog-api-key")
        with self._lock:
            self.bodies.append(body)
            self.keys.append(key)
            self.paths.append(request.path)
            reply = self._queue.popleft() if self._queue else (self.default or Reply())
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)
        try:
            await asyncio.sleep(reply.delay)
        finally:
            with self._lock:
                self._in_flight -= 1
        if method != "generateContent":
            reply = self.error(404, f"Method {method!r} is not supported by this fake.")
        elif key is None:
            reply = self.error(403)
        elif self.expected_key is not None and key != self.expected_key:
            reply = self.error(400, "API key not valid. Please pass a valid API key.")
        if reply.error is not None:
            return web.json_response({"error": reply.error}, status=reply.status)
        if reply.raw_body is not None:
            return web.Response(text=reply.raw_body, status=reply.status, content_type="text/html")
        text = reply.text
        if text is None:
            prompt = _prompt_of(body)
            asked = answer_for(prompt) if _asks_for_answer(body) else summary_for(prompt)
            text = json.dumps(asked, ensure_ascii=False)
        prompt_tokens = len(json.dumps(body)) // 4
        with self._lock:
            self.usage.append((prompt_tokens, len(text) // 4))
        return web.json_response(
            {
                "candidates": [
                    {
                        "content": {"parts": [{"text": text}], "role": "model"},
                        "finishReason": reply.finish_reason,
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": prompt_tokens,
                    "candidatesTokenCount": len(text) // 4,
                    "totalTokenCount": prompt_tokens + len(text) // 4,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
                },
                "modelVersion": self.model_version,
                "responseId": f"fake-{self.calls}",
            },
            status=reply.status,
        )

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> FakeGemini:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
