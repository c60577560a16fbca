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


async def test_replies(gbot, fake_gemini) -> None:
    tg = gbot.tg
    group = tg.group(-100777, "Lab")
    tg.set_member(group["id"], BOB["id"], "member")
    tg.push_message(group, f"/summary {SEED_ID}", BOB)
    card = await gbot.answer(group, SEED_ID)
    await tg.idle()
    card_msg = tg.message(group["id"], card.params["message_id"])
    for text in ["\u200b\u200d", "/ask which datasets?", f"/ask@{'paperbot_test_bot'} which datasets?", "/", "/foo bar",
                 "<b>hi</b> what?"]:
        m = tg.new_message(group, text, BOB, reply_to_message=card_msg)
        tg.push({"message": m})
        await tg.idle()
        print("CASE", repr(text), [parse_html(c.params["text"])[:150] for c in tg.calls_to("sendMessage", group["id"])
               if (c.params.get("reply_parameters") or {}).get("message_id") == m["message_id"] or c.result["message_id"] > m["message_id"]])
    # caption /ask
    photo = [{"file_id": "in-photo", "file_unique_id": "in-photo-u", "width": 90, "height": 90, "file_size": 900}]
    m = tg.new_message(group, None, BOB, photo=photo, caption=f"/ask {SEED_ID} which datasets?")
    tg.push({"message": m}); await tg.idle()
    print("CAPTION", [parse_html(c.params["text"])[:150] for c in tg.calls_to("sendMessage", group["id"]) if c.result["message_id"] > m["message_id"]])
    m = tg.new_message(group, None, BOB, photo=photo, caption="which datasets?", reply_to_message=card_msg)
    tg.push({"message": m}); await tg.idle()
    print("PHOTOREPLY", [parse_html(c.params["text"])[:150] for c in tg.calls_to("sendMessage", group["id"]) if c.result["message_id"] > m["message_id"]])
    print("REFUSED", refused(tg), "GEMINI", fake_gemini.calls)
