"""Pure renderers of summaries: Markdown posts (markdown), Telegram HTML (telegram), Discord
embeds and messages (discord), all built on the chat-neutral card (card) and headings (labels)."""
