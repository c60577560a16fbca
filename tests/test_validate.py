"""The validation layer and the button signer, as pure functions; the claim on a post in the store."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from bot import validate
from bot.buttons import CALLBACK_DATA_BYTES, BreakdownRef, ButtonSigner, load_signer, new_key
from bot.ids import BadArxivId, parse_arxiv_id
from bot.store import Store


def test_clean_strips_invisible_and_bidi_characters() -> None:
    assert validate.clean("\u200b ti:diff\u200busion\u200f \u202eAND\u202c cat:cs.CV\ufeff\n") == "ti:diffusion AND cat:cs.CV"
    assert validate.clean("\u2066\u2067\u2068\u2069\u061c") == ""
    assert validate.clean("a\tb\x00c") == "a b c"


@pytest.mark.parametrize("text", ["²", "٣", "５", "1²"])
def test_numbers_take_ascii_digits_only(text: str) -> None:
    with pytest.raises(validate.BadInput, match="digits 0-9"):
        validate.number(text, 1, 50, "max", "/settings max 10")


@pytest.mark.parametrize("text", ["0", "51", "-3", "10.5", "ten", "9" * 400, ""])
def test_numbers_out_of_range_say_the_range(text: str) -> None:
    with pytest.raises(validate.BadInput, match="from 1 to 50") as err:
        validate.number(text, 1, 50, "max", "/settings max 10")
    assert len(str(err.value)) < 200 and "/settings max 10" in str(err.value)


def test_query_limits() -> None:
    deep = "(" * 1000 + "a" + ")" * 1000
    with pytest.raises(validate.BadInput, match="at most 500 characters"):
        validate.query(deep)
    with pytest.raises(validate.BadInput, match="at most 10 deep; this one goes 11"):
        validate.query("(" * 11 + "a" + ")" * 11)
    assert validate.query('ti:"(((" AND ((a))') == 'ti:"(((" AND ((a))'  # quoted parentheses do not nest
    for bad in ("<b>x</b>", "x'; DROP TABLE topics;--", "a | b", "{x}"):
        with pytest.raises(validate.BadInput, match="cannot contain"):
            validate.query(bad)
    with pytest.raises(validate.BadInput, match="Give a query"):
        validate.query("\u200b\u200d")


def test_paper_ids() -> None:
    assert validate.paper_id(" 2405.\u200b01872 ") == "2405.01872"
    for bad, message in [("../../etc/passwd", "not an arXiv id"), ("x" * 301, "far too long"),
                         ("٢٤٠٥.٠١٨٧٢", "digits 0-9"), ("", "Give a paper id"), ("..\\secret", "not an arXiv id")]:
        with pytest.raises(validate.BadInput, match=message):
            validate.paper_id(bad)
    # The id parser itself no longer reads other scripts' digits, nor absurd versions.
    for bad in ("٢٤٠٥.٠١٨٧٢", "2405.01872v99999999999"):
        with pytest.raises(BadArxivId):
            parse_arxiv_id(bad)


def test_topic_ids() -> None:
    assert validate.topic_ids("#3, 5 7") == [3, 5, 7]
    assert validate.topic_ids("cat:cs.CV") is None and validate.topic_ids("all") is None
    with pytest.raises(validate.BadInput, match="digits 0-9"):
        validate.topic_ids("²")
    with pytest.raises(validate.BadInput, match="There is no topic #999999999999…"):
        validate.topic_ids("9" * 40)
    with pytest.raises(validate.BadInput, match="At most 30"):
        validate.topic_ids(" ".join(["1"] * 31))


def test_question_and_setting_values() -> None:
    assert validate.question(" What is it?\u200b ") == "What is it?"
    with pytest.raises(validate.BadInput, match="at most 1,000 characters; this one has 10,000"):
        validate.question("q" * 10_000)
    with pytest.raises(validate.BadInput, match="Ask a question"):
        validate.question("   ")
    with pytest.raises(validate.BadInput, match="settings are short"):
        validate.setting_value("Europe/" * 100, "/settings timezone Asia/Shanghai")


def test_button_data_is_signed_and_fits() -> None:
    signer = ButtonSigner(new_key())
    data = signer.breakdown("2405.01872", 2, "zh")
    assert data.startswith("bd1|2405.01872|2|zh|") and len(data.encode()) <= CALLBACK_DATA_BYTES
    assert signer.read(data) == BreakdownRef("2405.01872", 2, "zh")
    # Any change, a legacy unsigned payload, another key, or junk: refused.
    forged = [data.replace("|zh|", "|en|"), data.replace("01872", "01873"), data[:-1] + ("A" if data[-1] != "A" else "B"),
              "bd|2405.01872|2|zh", ButtonSigner(new_key()).breakdown("2405.01872", 2, "zh"), "", "x" * 500, "bd1|||||"]
    assert [signer.read(f) for f in forged] == [None] * len(forged)
    # A long language name does not fit in 64 bytes: the chat's language is used instead.
    long = signer.breakdown("math-ph/0301001", 12, "Old Church Slavonic With Extras Language")
    assert signer.read(long) == BreakdownRef("math-ph/0301001", 12, "") and len(long.encode()) <= 64
    assert "key" not in repr(signer).replace("<key hidden>", "")


async def test_button_key_is_made_once_and_kept(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "a.db") as store:
        first = await load_signer(store)
        data = first.breakdown("2405.01872", 1, "en")
    async with await Store.open(tmp_path / "a.db") as store:  # a restart
        assert (await load_signer(store)).read(data) == BreakdownRef("2405.01872", 1, "en")


async def test_a_post_is_claimed_once_even_by_concurrent_presses(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "a.db") as store:
        post = ("telegram", "-100", "42", "breakdown")
        won = await asyncio.gather(*(store.claim_button_post(*post) for _ in range(20)))
        assert won.count(True) == 1
        assert (await store.button_post(*post)) is not None
        await store.finish_button_post(*post, "43")
        assert not await store.claim_button_post(*post, timeout=timedelta(0))  # done is done
        assert (await store.button_post(*post))["posted_id"] == "43"  # type: ignore[index]

        other = ("telegram", "-100", "44", "breakdown")
        assert await store.claim_button_post(*other)
        await store.release_button_post(*other)  # the post failed: a later press may try
        assert await store.claim_button_post(*other)
        assert not await store.claim_button_post(*other)
        # A claim whose post never finished (the process died) is taken over after the timeout.
        assert await store.claim_button_post(*other, timeout=timedelta(seconds=-1))
