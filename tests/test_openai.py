"""The OpenAI-compatible backend: the real `openai` client against FakeOpenAI over HTTP, a real SQLite store."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from bot.app import chat_model
from bot.config import ConfigError, load_settings
from bot.store import Store
from bot.summarize import ExtractiveSummarizer, SummarizerError, SummaryService
from bot.summarize.base import TransientLLMError, Usage
from bot.summarize.gemini import GeminiModel
from bot.summarize.llm import SummarySchema
from bot.summarize.openai_compat import OpenAIModel, OpenAISummarizer, retry_after
from tests.fakes.openai import FakeOpenAI, Reply
from tests.test_summarize import PAPER

KEY = "sk-proj-FAKE0123456789abcdefghijklmnop"
MODEL = "gpt-4o-mini"
GOOD = {
    "title_translated": "T", "summary": "S.", "key_takeaways": ["a", "b", "c"], "keywords": ["k"],
    "background": "B.", "prior_work": "P.", "method": ["m"], "results": "R.", "conclusion": "C.",
    "affiliations": [], "code_url": None,
}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as f:
        yield f


@pytest.fixture
async def make(fake: FakeOpenAI) -> AsyncIterator[Callable[..., OpenAISummarizer]]:
    made: list[OpenAISummarizer] = []

    def build(model: str = MODEL, **kw: object) -> OpenAISummarizer:
        options: dict[str, object] = {
            "base_url": fake.base_url, "api_key": SecretStr(KEY), "timeout": 10.0, "backoff_base": 0.01, **kw
        }
        s = OpenAISummarizer(model, **options)  # type: ignore[arg-type]
        made.append(s)
        return s

    yield build
    for s in made:
        await s.aclose()


def recorder(store: Store) -> Callable[[str, Usage], object]:
    async def on_usage(model_key: str, usage: Usage) -> None:
        await store.record_llm_call(model_key, usage.input_tokens, usage.output_tokens)

    return on_usage


# --- the wire ------------------------------------------------------------------------------


async def test_summary_over_the_wire_with_a_strict_json_schema(store: Store, fake: FakeOpenAI, make) -> None:
    summary = await SummaryService(store, make(on_usage=recorder(store))).summarize(PAPER, "zh")
    assert summary.generated_by == f"openai:{MODEL}" and summary.language == "zh"
    assert summary.content.summary.startswith("[Chinese (Simplified)] One sentence about Active Fuzzing")
    assert fake.paths == ["/v1/chat/completions"] and fake.auth == [f"Bearer {KEY}"]

    body = fake.bodies[0]
    assert body["model"] == MODEL and body["messages"][0]["role"] == "user"
    assert "Target language: Chinese (Simplified)" in body["messages"][0]["content"]
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["name"] == "SummarySchema"
    schema = fmt["json_schema"]["schema"]
    # What OpenAI's strict mode demands: every property required, no others allowed.
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"]) == set(SummarySchema.model_fields)
    assert {"type": "null"} in schema["properties"]["code_url"]["anyOf"]

    # The usage the server reported is what the store holds.
    usage = await store.llm_usage_since(datetime.now(UTC) - timedelta(minutes=1))
    assert [(u.model, u.calls, u.input_tokens, u.output_tokens) for u in usage] == [
        (f"openai:{MODEL}", 1, *fake.usage[0])
    ]
    assert fake.usage[0][0] > 100


async def test_keyless_local_server_gets_no_authorization_header(fake: FakeOpenAI, make) -> None:
    content = await make("llama3.1", api_key=None).summarize(PAPER, "en", None)
    assert content.summary.startswith("[English]")
    assert fake.auth == [None]


async def test_cache_hit_makes_no_call(store: Store, fake: FakeOpenAI, make) -> None:
    service = SummaryService(store, make(), fallback=ExtractiveSummarizer())
    first = await service.summarize(PAPER, "de")
    again = await SummaryService(store, make(), fallback=ExtractiveSummarizer()).summarize(PAPER, "German")
    assert fake.calls == 1 and again.content == first.content
    assert await store.count_summaries() == 1


async def test_switching_models_never_serves_the_other_models_summary(store: Store, fake: FakeOpenAI, make) -> None:
    fake.script(FakeOpenAI.content({**GOOD, "summary": "Said by model A."}),
                FakeOpenAI.content({**GOOD, "summary": "Said by model B."}))
    a = await SummaryService(store, make("model-a")).summarize(PAPER, "en")
    b = await SummaryService(store, make("model-b")).summarize(PAPER, "en")
    assert fake.calls == 2 and [body["model"] for body in fake.bodies] == ["model-a", "model-b"]
    assert (a.generated_by, a.content.summary) == ("openai:model-a", "Said by model A.")
    assert (b.generated_by, b.content.summary) == ("openai:model-b", "Said by model B.")
    # Back to A: its own summary, from the cache.
    again = await SummaryService(store, make("model-a")).summarize(PAPER, "en")
    assert fake.calls == 2 and again.content.summary == "Said by model A."


# --- faults --------------------------------------------------------------------------------


async def test_429_then_success_waits_what_the_server_asked(store: Store, fake: FakeOpenAI, make, caplog) -> None:
    caplog.set_level(logging.INFO)
    fake.script(FakeOpenAI.rate_limited(retry_after_ms="300"), FakeOpenAI.rate_limited(retry_after="0.2"))
    started = time.monotonic()
    summary = await SummaryService(store, make(on_usage=recorder(store)), fallback=ExtractiveSummarizer()).summarize(
        PAPER, "en"
    )
    assert time.monotonic() - started >= 0.5  # backoff is 0.01 s: the waits are the server's
    assert fake.calls == 3 and summary.generated_by == f"openai:{MODEL}"
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2
    assert "HTTP 429 rate_limit_exceeded: Rate limit reached" in retries[0] and "retrying in 0.3 s" in retries[0]
    assert "retrying in 0.2 s" in retries[1]
    # Refused requests cost no tokens: only the completion is recorded.
    usage = await store.llm_usage_since(datetime.now(UTC) - timedelta(minutes=1))
    assert [u.calls for u in usage] == [1]


def test_retry_after_headers() -> None:
    assert retry_after(httpx.Headers({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    assert retry_after(httpx.Headers({"retry-after": "20"})) == 20.0
    now = time.time()
    date = format_datetime(datetime.fromtimestamp(now, UTC) + timedelta(seconds=30), usegmt=True)
    assert 28 <= (retry_after(httpx.Headers({"retry-after": date}), now=now) or 0) <= 31
    assert retry_after(httpx.Headers({"retry-after": "soon"})) is None
    assert retry_after(httpx.Headers({})) is None


async def test_server_error_for_good_gives_the_labelled_extractive_fallback(
    store: Store, fake: FakeOpenAI, make
) -> None:
    fake.default = FakeOpenAI.error(503)
    extractive = ExtractiveSummarizer()
    service = SummaryService(store, make(attempts=3), fallback=extractive)
    summary = await service.summarize(PAPER, "zh")
    assert fake.calls == 3
    assert summary.generated_by == "extractive" and summary.language == "en"
    assert await service.cached(PAPER, "zh") is None  # the LLM is asked again next time

    fake.default = None
    again = await service.summarize(PAPER, "zh")
    assert fake.calls == 4 and again.generated_by == f"openai:{MODEL}"


async def test_schema_breaking_replies_are_retried_and_their_tokens_counted(
    store: Store, fake: FakeOpenAI, make
) -> None:
    fake.script(
        FakeOpenAI.text('{"summary": "cut off by the token lim', finish_reason="length"),
        FakeOpenAI.content({k: v for k, v in GOOD.items() if k != "results"}),
        FakeOpenAI.content({**GOOD, "key_takeaways": ["only one"]}),
    )
    summary = await SummaryService(store, make(attempts=4, on_usage=recorder(store))).summarize(PAPER, "en")
    assert fake.calls == 4 and summary.content.summary.startswith("[English]")
    usage = await store.llm_usage_since(datetime.now(UTC) - timedelta(minutes=1))
    assert usage[0].calls == 4
    assert usage[0].input_tokens == sum(i for i, _ in fake.usage)
    assert usage[0].output_tokens == sum(o for _, o in fake.usage)

    fake.default = FakeOpenAI.text("Sorry, I cannot help with that.")
    with pytest.raises(SummarizerError, match="OpenAI-compatible API gave no usable summary .* not JSON"):
        await make(attempts=2).summarize(PAPER, "en", None)


async def test_a_server_without_json_schema_gets_json_object_from_then_on(
    store: Store, fake: FakeOpenAI, make, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    fake.refuse_json_schema = True
    summarizer = make()
    service = SummaryService(store, summarizer)
    first = await service.summarize(PAPER, "en")
    second = await service.summarize(PAPER, "fr")
    assert first.generated_by == second.generated_by == f"openai:{MODEL}"
    assert second.content.summary.startswith("[French]")
    # One refused json_schema request, then json_object only, the schema in the prompt.
    assert [b["response_format"]["type"] for b in fake.bodies] == ["json_schema", "json_object", "json_object"]
    assert "Reply with one JSON object only" in fake.prompts[-1] and '"key_takeaways"' in fake.prompts[-1]
    warnings = [r.getMessage() for r in caplog.records if "refuses response_format json_schema" in r.getMessage()]
    assert len(warnings) == 1 and "json_object" in warnings[0]

    # Requests that were already on their way with json_schema when the first refusal came are answered too.
    fresh = make()
    fake.default = FakeOpenAI.valid(delay=0.1)
    results = await asyncio.gather(*(fresh.summarize(PAPER, lang, None) for lang in ("es", "it", "ja")))
    assert [r.summary[:4] for r in results] == ["[Spa", "[Ita", "[Jap"]
    assert sorted(b["response_format"]["type"] for b in fake.bodies[3:]) == ["json_object"] * 3 + ["json_schema"] * 3
    assert sum("refuses response_format" in r.getMessage() for r in caplog.records) == 2  # once per model object
    fake.default = None

    # Its replies are checked and retried like any other.
    before = fake.calls
    fake.script(FakeOpenAI.content({**GOOD, "method": []}))
    content = await summarizer.summarize(PAPER, "de", None)
    assert fake.calls == before + 2 and content.summary.startswith("[German]")


async def test_a_model_without_temperature_is_asked_without_it(fake: FakeOpenAI, make, caplog) -> None:
    fake.default_temperature_only = {"o4-mini"}
    summarizer = make("o4-mini")
    await summarizer.summarize(PAPER, "en", None)
    await summarizer.summarize(PAPER, "de", None)
    assert [b.get("temperature") for b in fake.bodies] == [0.3, None, None]
    assert sum("takes no temperature" in r.getMessage() for r in caplog.records) == 1


async def test_refusals_are_not_retried_and_say_why(fake: FakeOpenAI, make) -> None:
    fake.expected_key = "sk-the-right-one"
    with pytest.raises(SummarizerError) as bad_key:
        await make().summarize(PAPER, "en", None)
    assert fake.calls == 1
    assert "refused the request: HTTP 401 invalid_api_key: Incorrect API key provided" in str(bad_key.value)

    fake.expected_key = None
    fake.models = {"gpt-4o"}
    with pytest.raises(SummarizerError, match="HTTP 404 model_not_found: The model `gpt-4o-mni` does not exist"):
        await make("gpt-4o-mni").summarize(PAPER, "en", None)
    assert fake.calls == 2

    fake.models = None
    fake.script(Reply(text=None, refusal="I can't help with that."))
    with pytest.raises(SummarizerError, match="declined: I can't help with that"):
        await make().summarize(PAPER, "en", None)
    assert fake.calls == 3


async def test_timeouts_and_dead_servers_are_retried(fake: FakeOpenAI, make) -> None:
    fake.script(FakeOpenAI.valid(delay=1.0))
    content = await make(timeout=0.3).summarize(PAPER, "en", None)
    assert fake.calls == 2 and content.summary.startswith("[English]")

    dead = make(base_url="http://127.0.0.1:9/v1", attempts=2)
    with pytest.raises(SummarizerError, match=r"2 attempts; last: no answer \("):
        await dead.summarize(PAPER, "en", None)


async def test_a_200_that_is_not_a_completion_is_retried(fake: FakeOpenAI, make) -> None:
    fake.script(Reply(raw_body="<html>captive portal</html>"), Reply(raw_body='{"choices": "nope"}'))
    content = await make(attempts=3).summarize(PAPER, "en", None)
    assert fake.calls == 3 and content.summary.startswith("[English]")


async def test_a_server_without_usage_counts_zero_tokens(store: Store, fake: FakeOpenAI, make) -> None:
    fake.default = FakeOpenAI.valid(usage=False)
    await make(on_usage=recorder(store)).summarize(PAPER, "en", None)
    usage = await store.llm_usage_since(datetime.now(UTC) - timedelta(minutes=1))
    assert [(u.calls, u.input_tokens, u.output_tokens) for u in usage] == [(1, 0, 0)]


async def test_a_failing_usage_hook_never_costs_the_summary(fake: FakeOpenAI, make, caplog) -> None:
    async def broken(model_key: str, usage: Usage) -> None:
        raise RuntimeError("database is locked")

    content = await make(on_usage=broken).summarize(PAPER, "en", None)
    assert content.summary.startswith("[English]") and fake.calls == 1
    assert any("could not record the token usage" in r.getMessage() for r in caplog.records)


async def test_api_key_never_in_logs_or_errors_at_debug(fake: FakeOpenAI, make, caplog) -> None:
    caplog.set_level(logging.DEBUG)  # root: openai, httpx and httpcore log requests at DEBUG
    for name in ("openai", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    # A server that echoes the key back in its error message, then a rejected key.
    fake.script(*[FakeOpenAI.error(500, f"backend failed for key {KEY}")] * 2)
    with pytest.raises(SummarizerError) as failed:
        await make(attempts=2).summarize(PAPER, "en", None)
    await make().summarize(PAPER, "en", None)
    fake.expected_key = "sk-another"
    with pytest.raises(SummarizerError) as rejected:
        await make().summarize(PAPER, "en", None)

    assert fake.auth == [f"Bearer {KEY}"] * 4  # the key did go to the server, in its header
    assert "backend failed for key ***" in str(failed.value)
    assert any(r.name.startswith("openai") and r.levelno == logging.DEBUG for r in caplog.records)
    for text in (str(failed.value), repr(failed.value), str(rejected.value), caplog.text):
        assert KEY not in text


def test_plain_http_to_another_host_warns(caplog) -> None:
    caplog.set_level(logging.WARNING)
    OpenAIModel("m", base_url="http://gpu-box.example.org:8000/v1", api_key=SecretStr(KEY))
    OpenAIModel("m", base_url="https://api.deepseek.com", api_key=SecretStr(KEY))
    OpenAIModel("m", base_url="http://localhost:11434/v1")
    OpenAIModel("m", base_url="http://user:pw@10.0.0.5:1234/v1")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "gpu-box.example.org:8000" in warnings[0] and "API key travel in clear text" in warnings[0]
    assert "10.0.0.5:1234" in warnings[1] and "pw" not in warnings[1] and "API key" not in warnings[1]


async def test_transient_errors_carry_the_servers_wait(fake: FakeOpenAI) -> None:
    model = OpenAIModel(MODEL, base_url=fake.base_url, api_key=SecretStr(KEY))
    try:
        fake.script(FakeOpenAI.rate_limited(retry_after="7"), FakeOpenAI.error(500))
        with pytest.raises(TransientLLMError) as limited:
            await model.complete("json please", SummarySchema)
        with pytest.raises(TransientLLMError) as broken:
            await model.complete("json please", SummarySchema)
    finally:
        await model.aclose()
    assert limited.value.retry_after == 7.0 and broken.value.retry_after is None


# --- configuration: SUMMARIZER and the auto rule -------------------------------------------------


@pytest.mark.parametrize(
    ("env", "backend", "model_name"),
    [
        ({}, "extractive", "extractive"),
        ({"GEMINI_API_KEY": "g-key"}, "gemini", "gemini:gemini-2.5-flash"),
        ({"GEMINI_API_KEY": "g-key", "OPENAI_API_KEY": "o-key", "OPENAI_MODEL": "gpt-4o"},
         "gemini", "gemini:gemini-2.5-flash"),
        ({"OPENAI_API_KEY": "o-key", "OPENAI_MODEL": "gpt-4o"}, "openai", "openai:gpt-4o"),
        ({"OPENAI_BASE_URL": "http://localhost:11434/v1", "OPENAI_MODEL": "llama3.1"}, "openai", "openai:llama3.1"),
        ({"OPENAI_BASE_URL": "", "OPENAI_API_KEY": " ", "OPENAI_MODEL": "gpt-4o"}, "extractive", "extractive"),
        ({"OPENAI_MODEL": "gpt-4o"}, "extractive", "extractive"),
        ({"SUMMARIZER": "openai", "OPENAI_MODEL": "gpt-4o", "GEMINI_API_KEY": "g"}, "openai", "openai:gpt-4o"),
        ({"SUMMARIZER": "extractive", "OPENAI_API_KEY": "o-key"}, "extractive", "extractive"),
    ],
)
def test_auto_picks_the_backend(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], backend: str,
                                model_name: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.backend == backend and settings.model_name == model_name
    model = chat_model(settings)
    expected = {"gemini": GeminiModel, "openai": OpenAIModel, "extractive": type(None)}[backend]
    assert isinstance(model, expected)
    if model is not None:
        assert model.model_key == model_name


def test_openai_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.openai_api_key is None and s.openai_model is None and s.openai_base_url is None
    assert s.openai_endpoint == "https://api.openai.com/v1"
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_MODEL", MODEL)
    monkeypatch.setenv("OPENAI_BASE_URL", "https://openrouter.ai/api/v1/")
    s = load_settings()
    assert KEY not in repr(s) and KEY not in str(s)
    assert s.openai_endpoint == "https://openrouter.ai/api/v1"


@pytest.mark.parametrize(
    "env",
    [
        {"SUMMARIZER": "openai"},
        {"OPENAI_API_KEY": "o-key"},
        {"OPENAI_BASE_URL": "http://localhost:11434/v1", "OPENAI_MODEL": " "},
    ],
)
def test_missing_model_names_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "OPENAI_MODEL" in message and "\n" not in message and "o-key" not in message


def test_a_bad_base_url_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "localhost:11434")
    with pytest.raises(ConfigError, match="OPENAI_BASE_URL"):
        load_settings()


# --- the store's usage table -------------------------------------------------------------------


async def test_usage_is_summed_per_model_since_a_time_and_old_rows_go(store: Store) -> None:
    now = datetime.now(UTC)
    await store.record_llm_call("gemini:gemini-2.5-flash", 1000, 200, at=now - timedelta(hours=30))
    await store.record_llm_call("openai:gpt-4o-mini", 1200, 300, at=now - timedelta(hours=2))
    await store.record_llm_call("openai:gpt-4o-mini", 800, 100, at=now)
    await store.record_llm_call("gemini:gemini-2.5-flash", 50, 5, at=now)
    day = await store.llm_usage_since(now - timedelta(hours=24))
    assert [dataclasses.astuple(u) for u in day] == [
        ("gemini:gemini-2.5-flash", 1, 50, 5), ("openai:gpt-4o-mini", 2, 2000, 400)
    ]
    assert (await store.llm_usage_since(now - timedelta(days=2)))[0].calls == 2

    # A row older than the 30 days kept goes at the next prune (at most one an hour per process).
    await store.record_llm_call("openai:old", 1, 1, at=now - timedelta(days=31))
    store._usage_pruned_at = None
    await store.record_llm_call("openai:gpt-4o-mini", 1, 1, at=now)
    models = {u.model for u in await store.llm_usage_since(now - timedelta(days=365))}
    assert "openai:old" not in models and len(models) == 2


# --- the command line, as a user runs it ---------------------------------------------------------


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as f:
        yield f


def _env(tmp_path: Path, fake_arxiv: object, fake_openai: FakeOpenAI, **extra: str) -> dict[str, str]:
    from tests.conftest import env_for

    env = env_for(tmp_path, fake_arxiv)
    del env["SUMMARIZER"]  # auto: an OPENAI_BASE_URL picks the OpenAI-compatible backend
    env.update(OPENAI_BASE_URL=fake_openai.base_url, OPENAI_MODEL="qwen2.5:7b", **extra)
    return env


def test_cli_summary_json_with_auto_picking_openai_and_its_tokens_in_status(
    tmp_path: Path, fake_arxiv, fake_openai: FakeOpenAI
) -> None:
    from tests.fakes.arxiv import SEED_ID
    from tests.test_cli import SPEC_FIELDS, paperbot

    env = _env(tmp_path, fake_arxiv, fake_openai)
    first = paperbot(tmp_path, env, "summary", SEED_ID, "--format", "json", "--lang", "zh")
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert set(SPEC_FIELDS) <= set(data)
    assert data["generated_by"] == "openai:qwen2.5:7b" and data["language"] == "zh"
    assert data["arxiv_id"] == SEED_ID and data["title"].startswith("Defect Image Sample Generation")
    assert data["summary"].startswith("[Chinese (Simplified)]") and 3 <= len(data["key_takeaways"]) <= 8
    assert fake_openai.calls == 1 and fake_openai.auth == [None]  # a keyless local server
    assert fake_openai.bodies[0]["model"] == "qwen2.5:7b"

    status = paperbot(tmp_path, env, "status")
    assert status.returncode == 0, status.stderr
    assert "summarizer:     openai:qwen2.5:7b" in status.stdout
    (input_tokens, output_tokens), = fake_openai.usage
    assert "LLM calls in the last 24 hours:\n" in status.stdout
    assert (
        f"  openai:qwen2.5:7b: 1 call, {input_tokens} input tokens, {output_tokens} output tokens"
        in status.stdout
    )


async def test_app_wires_gemini_usage_to_the_store(tmp_path: Path, fake_arxiv, fake_gemini, monkeypatch) -> None:
    from bot.app import build_components
    from tests.conftest import env_for

    for name, value in env_for(tmp_path, fake_arxiv, fake_gemini).items():
        monkeypatch.setenv(name, value)
    c = await build_components(load_settings())
    try:
        summary = await c.summaries.summarize(PAPER, "en")
        usage = await c.store.llm_usage_since(datetime.now(UTC) - timedelta(minutes=1))
    finally:
        await c.aclose()
    assert summary.generated_by == "gemini:gemini-2.5-flash"
    (inputs, outputs), = fake_gemini.usage
    assert [dataclasses.astuple(u) for u in usage] == [("gemini:gemini-2.5-flash", 1, inputs, outputs)]


async def test_gemini_usage_metadata_is_recorded_for_every_reply(store: Store, fake_gemini) -> None:
    from bot.summarize import GeminiSummarizer

    fake_gemini.script(fake_gemini.text("not json"))
    gemini = GeminiSummarizer(SecretStr("AIza-fake"), "gemini-2.5-flash", base_url=fake_gemini.url, backoff_base=0.01)
    gemini.on_usage = recorder(store)
    try:
        await SummaryService(store, gemini).summarize(PAPER, "en")
    finally:
        await gemini.aclose()
    usage = await store.llm_usage_since(datetime.now(UTC) - timedelta(minutes=1))
    assert fake_gemini.calls == 2  # the rejected reply cost tokens too
    assert [dataclasses.astuple(u) for u in usage] == [
        ("gemini:gemini-2.5-flash", 2, sum(i for i, _ in fake_gemini.usage), sum(o for _, o in fake_gemini.usage))
    ]


@pytest.mark.parametrize(
    "command", [["status"], ["summary", "2405.01872"], ["digest", "cat:cs.CV"], ["poll"], ["push"], ["run"]]
)
def test_cli_missing_model_exits_2_naming_it(
    tmp_path: Path, fake_arxiv, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    from typer.testing import CliRunner

    from bot.cli import app
    from tests.conftest import env_for

    env = env_for(tmp_path, fake_arxiv) | {"SUMMARIZER": "openai", "OPENAI_API_KEY": KEY}
    result = CliRunner().invoke(app, command, env=env)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "OPENAI_MODEL" in lines[0], result.output
    assert KEY not in result.output


def test_cli_key_never_in_debug_logs(tmp_path: Path, fake_arxiv, fake_openai: FakeOpenAI) -> None:
    from tests.fakes.arxiv import SEED_ID
    from tests.test_cli import paperbot

    fake_openai.expected_key = KEY
    # A proxy that echoes the key in its error: refused, so the labelled extractive summary stands in.
    fake_openai.script(FakeOpenAI.error(400, f"upstream rejected the key {KEY}"))
    env = _env(tmp_path, fake_arxiv, fake_openai, OPENAI_API_KEY=KEY, LOG_LEVEL="DEBUG")
    refused = paperbot(tmp_path, env, "summary", SEED_ID, "--format", "json")
    assert refused.returncode == 0, refused.stderr
    assert json.loads(refused.stdout)["generated_by"] == "extractive"
    assert "upstream rejected the key ***" in refused.stderr
    assert fake_openai.auth == [f"Bearer {KEY}"]
    assert "DEBUG" in refused.stderr and "chat/completions" in refused.stderr
    assert KEY not in refused.stderr and KEY not in refused.stdout


def test_a_password_in_the_base_urls_userinfo_never_reaches_logs_errors_or_status(
    tmp_path: Path, fake_arxiv, fake_openai: FakeOpenAI
) -> None:
    """A proxy URL `http://user:password@host/v1`: the openai SDK logs request URLs at DEBUG."""
    from tests.fakes.arxiv import SEED_ID
    from tests.test_cli import paperbot

    password = "pw-SECRET-4f2a9c"
    env = _env(tmp_path, fake_arxiv, fake_openai, LOG_LEVEL="DEBUG")
    env["OPENAI_BASE_URL"] = env["OPENAI_BASE_URL"].replace("http://", f"http://proxyuser:{password}@")
    fake_openai.script(FakeOpenAI.error(400, f"proxy refused proxyuser:{password}"))
    refused = paperbot(tmp_path, env, "summary", SEED_ID, "--format", "json")
    assert refused.returncode == 0, refused.stderr
    assert "chat/completions" in refused.stderr and "proxy refused proxyuser:***" in refused.stderr
    shown = paperbot(tmp_path, env, "status")
    for out in (refused.stdout, refused.stderr, shown.stdout, shown.stderr):
        assert password not in out


@pytest.mark.parametrize("suffix", ["", "/v1/chat/completions"])
async def test_a_base_url_without_the_api_path_says_what_to_set(fake: FakeOpenAI, make, suffix: str) -> None:
    """`OPENAI_BASE_URL=http://localhost:11434` (Ollama without /v1), or the whole endpoint pasted in."""
    with pytest.raises(SummarizerError) as wrong:
        await make(base_url=fake.url + suffix).summarize(PAPER, "en", None)
    message = str(wrong.value)
    assert "HTTP 404" in message
    assert "OPENAI_BASE_URL" in message and "/v1" in message


async def test_a_base_url_with_a_trailing_slash_works(fake: FakeOpenAI, make) -> None:
    content = await make(base_url=fake.base_url + "/").summarize(PAPER, "en", None)
    assert content.key_takeaways and fake.calls == 1


async def test_quotes_stay_with_their_takeaways_when_takeaways_are_dropped(fake: FakeOpenAI, make) -> None:
    """A blank or repeated takeaway is dropped: its quote must go with it, or every later takeaway
    is shown with (and verified by) the quote of the one before."""
    reply = dict(GOOD, key_takeaways=["A.", "  ", "B.", "- A.", "C."],
                 evidence=["quote of A", "quote of nothing", "quote of B", "quote of A again", "quote of C"])
    fake.script(FakeOpenAI.content(reply))
    content = await make().summarize(PAPER, "en", None)
    assert content.key_takeaways == ["A.", "B.", "C."]
    assert [e.quote for e in content.evidence or []] == ["quote of A", "quote of B", "quote of C"]


async def test_settings_pasted_with_spaces_or_a_newline_still_work(
    monkeypatch: pytest.MonkeyPatch, fake: FakeOpenAI
) -> None:
    """`OPENAI_MODEL=gpt-4o-mini ` in a .env file, a key copied with its line end."""
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("OPENAI_MODEL", f" {MODEL} ")
    monkeypatch.setenv("OPENAI_API_KEY", f"{KEY}\n")
    settings = load_settings()
    assert settings.model_name == f"openai:{MODEL}"
    fake.expected_key, fake.models = KEY, {MODEL}
    model = chat_model(settings)
    assert model is not None
    try:
        completion = await model.complete("Summarize JSON", SummarySchema)
    finally:
        await model.aclose()
    assert completion.text and fake.auth == [f"Bearer {KEY}"]


async def test_a_reply_cut_off_at_the_output_limit_says_so(fake: FakeOpenAI, make) -> None:
    """A server's output limit (Ollama's num_predict, a proxy's max_tokens) cuts the JSON: the error
    said "a reply that is not JSON", which sends the user looking in the wrong place."""
    fake.script(*[FakeOpenAI.text('{"summary": "cut off by the tok', finish_reason="length")] * 2)
    with pytest.raises(SummarizerError, match="cut off at the model's output limit"):
        await make(attempts=2).summarize(PAPER, "en", None)
    assert fake.calls == 2


def test_every_url_password_is_a_secret_to_redact(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://proxy-user:p%40ss-Secret1@proxy.example/v1")
    monkeypatch.setenv("OPENAI_MODEL", MODEL)
    monkeypatch.setenv("GEMINI_BASE_URL", "https://u:gem-Secret2@gemini-proxy.example")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    secrets = load_settings().secret_values()
    assert {KEY, "p%40ss-Secret1", "p@ss-Secret1", "gem-Secret2"} <= set(secrets)
    from bot.config import url_password

    assert url_password("postgresql://bot:pg-Secret3@db:5432/paperbot") == "pg-Secret3"
    assert url_password(str(Path("postgresql://bot:pg-Secret3@db:5432/paperbot"))) == "pg-Secret3"
    assert url_password("https://api.openai.com/v1") is None and url_password("https://h/a@b") is None
