"""The messages of each paper's post (so a reply to any of them is a question about that paper),
and the cached answers to questions about papers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bot.models import Platform
from bot.store.base import StoreBase, dumps, loads, now_iso


@dataclass(frozen=True, slots=True)
class PostRef:
    """The paper a message of a post belongs to, in the language it was posted in."""

    arxiv_id: str
    version: int
    language: str

    @property
    def versioned_id(self) -> str:
        return f"{self.arxiv_id}v{self.version}"


class PostStore(StoreBase):
    async def add_post_messages(
        self, platform: Platform, chat_id: str, message_ids: Iterable[int | str], arxiv_id: str, version: int,
        language: str,
    ) -> None:
        """Remember that these messages (card, photos, breakdown pieces) belong to the paper's post."""
        now = now_iso()
        for message_id in message_ids:
            await self.execute(
                "INSERT INTO post_messages(platform, chat_id, message_id, arxiv_id, version, language, created_at) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT(platform, chat_id, message_id) DO UPDATE SET "
                "arxiv_id=excluded.arxiv_id, version=excluded.version, language=excluded.language",
                (str(platform), str(chat_id), str(message_id), arxiv_id, version, language, now),
            )

    async def post_of_message(self, platform: Platform, chat_id: str, message_id: int | str) -> PostRef | None:
        row = await self.fetchone(
            "SELECT arxiv_id, version, language FROM post_messages WHERE platform=? AND chat_id=? AND message_id=?",
            (str(platform), str(chat_id), str(message_id)),
        )
        return PostRef(row["arxiv_id"], row["version"], row["language"]) if row else None

    async def get_answer(
        self, arxiv_id: str, version: int, question_key: str, language: str, model: str, prompt_version: str
    ) -> dict[str, Any] | None:
        row = await self.fetchone(
            "SELECT content FROM answers WHERE arxiv_id=? AND version=? AND question_key=? AND language=? "
            "AND model=? AND prompt_version=?",
            (arxiv_id, version, question_key, language, model, prompt_version),
        )
        return loads(row["content"]) if row else None

    async def put_answer(
        self, arxiv_id: str, version: int, question_key: str, language: str, model: str, prompt_version: str,
        content: dict[str, Any],
    ) -> None:
        await self.execute(
            "INSERT INTO answers(arxiv_id, version, question_key, language, model, prompt_version, content, "
            "created_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(arxiv_id, version, question_key, language, model, "
            "prompt_version) DO UPDATE SET content=excluded.content, created_at=excluded.created_at",
            (arxiv_id, version, question_key, language, model, prompt_version, dumps(content), now_iso()),
        )

    async def count_answers(self) -> int:
        row = await self.fetchone("SELECT COUNT(*) FROM answers")
        return int(row[0]) if row else 0
