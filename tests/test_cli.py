"""The `paperbot` command as a user runs it: a subprocess against the loopback fakes."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import env_for, subprocess_env
from tests.fakes.arxiv import SEED_ID, FakeArxiv
from tests.fakes.gemini import FakeGemini

SPEC_FIELDS = [
    "arxiv_id", "version", "title", "title_translated", "authors", "affiliations", "url", "pdf_url",
    "code_url", "comment", "categories", "published", "language", "summary", "key_takeaways", "keywords",
    "background", "prior_work", "method", "results", "conclusion", "generated_by", "images", "evidence",
    "unsupported_numbers",
]


def paperbot(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_summary_json_has_every_spec_field_and_second_run_makes_no_llm_call(
    tmp_path: Path, fake_arxiv: FakeArxiv, fake_gemini: FakeGemini
) -> None:
    env = env_for(tmp_path, fake_arxiv, fake_gemini)
    first = paperbot(tmp_path, env, "summary", SEED_ID, "--format", "json", "--lang", "zh", "--images", "out")
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert list(data)[: len(SPEC_FIELDS)] == SPEC_FIELDS or set(SPEC_FIELDS) <= set(data)
    assert data["arxiv_id"] == SEED_ID and data["version"] == 1
    assert data["title"].startswith("Defect Image Sample Generation")
    assert data["authors"][0] == "Yichun Tai"
    assert data["generated_by"] == "gemini:gemini-2.5-flash"
    assert data["language"] == "zh"
    assert 3 <= len(data["key_takeaways"]) <= 8 and isinstance(data["method"], list)
    # Grounding: the fake quotes the abstract for each takeaway; found, so verified (no PDF page).
    assert [(bool(e["quote"]), e["verified"], e["page"]) for e in data["evidence"]] == [(True, True, None)] * len(
        data["key_takeaways"]
    )
    assert data["unsupported_numbers"] == []
    assert data["pdf_url"].startswith(fake_arxiv.url)  # from the entry's pdf link, not a fixed host
    assert fake_gemini.calls == 1
    prompt = fake_gemini.prompts[0]
    assert "Chinese" in prompt and "StableSDG" in prompt
    # The PDF's own text went into the prompt (TableFormer stands in for the seed paper's PDF).
    assert "tableformer" in prompt.lower() and data["full_text_used"] is True
    # Real figures cut from the served PDF, written where asked and listed in JSON.
    assert data["images"], first.stderr
    for path in data["images"]:
        with Image.open(tmp_path / path if not Path(path).is_absolute() else path) as img:
            assert img.format == "JPEG" and max(img.size) <= 1280
    assert "image(s) written" in first.stderr

    second = paperbot(tmp_path, env, "summary", f"arXiv:{SEED_ID}", "--format", "json", "--lang", "Chinese")
    assert second.returncode == 0, second.stderr
    assert fake_gemini.calls == 1  # cached: no second LLM call
    assert json.loads(second.stdout)["summary"] == data["summary"]


def test_summary_markdown_is_seed_shaped_and_extractive_is_labelled(tmp_path: Path, fake_arxiv: FakeArxiv) -> None:
    env = env_for(tmp_path, fake_arxiv)
    result = paperbot(tmp_path, env, "summary", f"https://arxiv.org/abs/{SEED_ID}v1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.index("## Defect Image Sample Generation") < out.index("**Summary**") < out.index("**Key Takeaways**")
    assert "Extractive summary (no LLM" in out
    assert "never as a source for academic work" in out


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["summary", "not-an-id"], 2, "Accepted forms"),
        (["summary", "2405.99999"], 1, "arXiv has no paper 2405.99999"),
        (["digest", "cat:cs.CV AND"], 2, "position"),
        (["digest", "cat:cs.CV", "--date", "May 3"], 2, "YYYY-MM-DD"),
        (["run"], 2, "TELEGRAM_BOT_TOKEN"),
    ],
)
def test_errors_are_one_line_with_the_right_exit_code(
    tmp_path: Path, fake_arxiv: FakeArxiv, args: list[str], code: int, fragment: str
) -> None:
    result = paperbot(tmp_path, env_for(tmp_path, fake_arxiv), *args)
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_bad_configuration_names_the_variable(tmp_path: Path, fake_arxiv: FakeArxiv) -> None:
    env = env_for(tmp_path, fake_arxiv) | {"PAPERBOT_SUMMARY_QUOTA": "lots"}
    result = paperbot(tmp_path, env, "status")
    assert result.returncode == 2 and "PAPERBOT_SUMMARY_QUOTA" in result.stderr


def test_digest_selects_by_date_and_query_and_writes_a_seed_shaped_post(
    tmp_path: Path, fake_arxiv: FakeArxiv
) -> None:
    day = datetime(2024, 5, 3, 10, tzinfo=UTC)
    fake_arxiv.add_paper("2405.02001", title="Diffusion priors for segmentation", published=day,
                         abstract="We propose a diffusion prior. It works well.", categories=["cs.CV"])
    fake_arxiv.add_paper("2405.02002", title="Diffusion for language", published=day,
                         abstract="We study text diffusion. It is fast.", categories=["cs.CL"])
    fake_arxiv.add_paper("2405.02003", title="Diffusion of the day after", published=day.replace(day=4),
                         abstract="Later diffusion work. Nice.", categories=["cs.CV"])
    env = env_for(tmp_path, fake_arxiv)
    out = tmp_path / "posts" / "2024-05-03.md"
    result = paperbot(tmp_path, env, "digest", "cat:cs.CV AND ti:diffusion", "--date", "2024-05-03",
                      "--out", str(out))
    assert result.returncode == 0, result.stderr
    post = out.read_text()
    assert post.startswith("---\ntitle: ")
    front = post.split("---")[1]
    for key in ("date:", "author:", "categories:", "tags:", "description:", "keywords:", "mathjax:"):
        assert key in front
    titles = [line for line in post.splitlines() if line.startswith("## ")]
    assert titles == ["## Defect Image Sample Generation With Diffusion Prior for Steel Surface Defect Recognition",
                      "## Diffusion priors for segmentation"] or sorted(titles) == sorted(
        ["## Defect Image Sample Generation With Diffusion Prior for Steel Surface Defect Recognition",
         "## Diffusion priors for segmentation"])
    assert "Diffusion for language" not in post and "day after" not in post
    assert "# 2024-05-03" in post


def test_status_reports_counts(tmp_path: Path, fake_arxiv: FakeArxiv) -> None:
    env = env_for(tmp_path, fake_arxiv)
    assert paperbot(tmp_path, env, "summary", SEED_ID).returncode == 0
    result = paperbot(tmp_path, env, "status")
    assert result.returncode == 0, result.stderr
    assert "papers:         1" in result.stdout and "summaries:      1" in result.stdout
    assert "last poll:      never" in result.stdout
    assert "LLM calls in the last 24 hours: none" in result.stdout


def test_status_lists_given_up_deliveries_with_their_reason(tmp_path: Path, fake_arxiv: FakeArxiv) -> None:
    """Issue 9: a message given up after a day of failures shows in `paperbot status`."""
    import asyncio
    from datetime import UTC, date, datetime

    from bot.models import Chat, ChatKind, Platform
    from bot.store import Store

    env = env_for(tmp_path, fake_arxiv)
    assert paperbot(tmp_path, env, "summary", SEED_ID).returncode == 0  # stores the paper

    async def give_up() -> None:
        async with await Store.open(env["PAPERBOT_DB"]) as store:
            chat = await store.ensure_chat(Chat(Platform.TELEGRAM, "4242", ChatKind.PRIVATE))
            assert chat.id is not None
            await store.ledger_add(chat.id, [(SEED_ID, date(2024, 5, 6), "cat:cs.CV")])
            (row,) = await store.ledger_open(chat.id)
            first = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
            await store.ledger_failed(
                [row.id], "TransientSendError: Telegram: NetworkError: Bad Gateway",
                retry_at=datetime(2024, 5, 7, 9, 30, tzinfo=UTC), first_failed=first, give_up=True,
            )

    asyncio.run(give_up())
    result = paperbot(tmp_path, env, "status")
    assert result.returncode == 0, result.stderr
    assert "given up:       1 message(s)" in result.stdout
    assert (
        f"  telegram:4242 {SEED_ID}: TransientSendError: Telegram: NetworkError: Bad Gateway "
        "(failing since 2024-05-06T09:00+00:00)"
    ) in result.stdout
    assert "pending:        0 deliveries" in result.stdout
    assert "awaiting API:   0 listed paper(s) the arXiv API does not know yet" in result.stdout
