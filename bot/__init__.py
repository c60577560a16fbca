"""paperbot: new arXiv papers, summarized, delivered to Telegram and Discord chats."""

__version__ = "0.1.0"
