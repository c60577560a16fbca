from __future__ import annotations
import asyncio
from typing import Any
from bot.models import Platform
from tests.fakes.arxiv import SEED_ID
from tests.fakes.gemini import FakeGemini
from tests.fakes.telegram import parse_html, FakeTelegram
from tests.test_ask import gbot, tg, ask, reply_to, QUESTION  # noqa
from tests.test_abuse_telegram import refused, texts
from tests.test_telegram import ALICE, BOB


async def test_long_answer(gbot, fake_gemini) -> None:
    fake_gemini.script(FakeGemini.content({"answer": "word " * 8000, "quotes": ["x" * 5000, "y"*5000, "z"*5000]}))
    chat = gbot.tg.private_chat(ALICE)
    qid = ask(gbot, chat, f"/ask {SEED_ID} {QUESTION}", ALICE)
    await reply_to(gbot, qid, chat)
    await gbot.tg.idle()
    r = [c for c in gbot.tg.calls_to("sendMessage", chat["id"])]
    print("MESSAGES", len(r), [len(c.params["text"]) for c in r])


async def test_hostile_ask(gbot, fake_gemini) -> None:
    tg = gbot.tg
    hostile = {"10k": "A" * 10_000, "zw": "\u200b\u200d", "html": "<b>x</b> & <script>", "empty": "",
               "path": "../../etc/passwd What?", "sup": "²"}
    chats = {}
    n = 0
    for where in ("private", "group", "channel"):
        for name, arg in hostile.items():
            n += 1
            for form in ("id", "noid"):
                n += 1
                text = f"/ask {SEED_ID} {arg}" if form == "id" else f"/ask {arg}"
                if where == "private":
                    u = FakeTelegram.user(60_000 + n, "H"); chat = tg.private_chat(u)
                    tg.push_message(chat, text.strip(), u)
                elif where == "group":
                    chat = tg.group(-100_000_000 - n, "G"); tg.push_message(chat, text.strip(), BOB)
                else:
                    chat = tg.channel(-100_200_000 - n, "C"); tg.push_channel_post(chat, text.strip())
                chats[chat["id"]] = (where, name, form)
    await tg.idle(quiet=0.5, timeout=60)
    print("REFUSED", refused(tg))
    for cid, case in chats.items():
        print(case, texts(tg, cid)[:1])
    print("GEMINI", fake_gemini.calls)
