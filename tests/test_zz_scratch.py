from __future__ import annotations
from tests.fakes.telegram import FakeTelegram
from tests.test_abuse_telegram import bot, tg, HOSTILE, COMMANDS, texts, refused  # noqa


async def test_channel_hostile(bot) -> None:
    tg = bot.tg
    cases = {}
    n = 0
    for command in COMMANDS + ["ask", "ask 2405.01872"]:
        for name, arg in HOSTILE.items():
            n += 1
            chat = tg.channel(-100_300_000 - n, f"C{n}")
            head, _, rest = command.partition(" ")
            tg.push_channel_post(chat, f"/{head} {rest} {arg}".rstrip())
            cases[chat["id"]] = (command, name)
    await tg.idle(quiet=0.5, timeout=120)
    print("REFUSED", refused(tg))
    bad = [(case, texts(tg, cid)) for cid, case in cases.items() if not texts(tg, cid) or any("went wrong" in t for t in texts(tg, cid))]
    print("BAD", bad)
    assert not bad
