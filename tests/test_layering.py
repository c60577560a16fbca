"""The core never imports a chat adapter, and bot/ has no import cycle (read from the source with ast,
so a lazy import inside a function counts too)."""

from __future__ import annotations

import ast
from pathlib import Path

BOT = Path(__file__).resolve().parent.parent / "bot"
ADAPTERS = {"bot.telegram_bot", "bot.discord_bot"}
# Where the app is put together: these may know the platforms and inject their senders.
COMPOSITION = {"bot.runner", "bot.senders", "bot.cli", "bot.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(BOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every bot.* module the file imports, anywhere in it (`from bot.x import y` may name a module y)."""
    modules = {module_name(p) for p in BOT.rglob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("bot"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("bot"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
    return found & modules


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) - {module_name(p)} for p in BOT.rglob("*.py")}


def test_no_core_module_imports_an_adapter() -> None:
    offenders = {
        name: sorted(deps & ADAPTERS)
        for name, deps in graph().items()
        if name not in ADAPTERS | COMPOSITION and deps & ADAPTERS
    }
    assert offenders == {}


def test_the_core_modules_are_checked() -> None:
    names = set(graph())
    for core in ("bot.service", "bot.poller", "bot.scheduler", "bot.delivery", "bot.query", "bot.store.feed",
                 "bot.summarize.service", "bot.render.telegram", "bot.sender"):
        assert core in names


def test_bot_has_no_import_cycle() -> None:
    g = graph()
    # Packages import their own modules from __init__; a module importing its package is not a cycle.
    for name in g:
        g[name] = {d for d in g[name] if not name.startswith(d + ".")}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for name in sorted(g):
        if name not in state:
            visit(name, [name])
    assert cycles == []
