"""Chat's slash commands: one entry in `COMMANDS` (its arguments, its line in /help, and the
function that acts on the chat it is given) and one function each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..conversation import Conversation, to_markdown

if TYPE_CHECKING:
    from ..events import Stats
    from .chat import Chat


class Command(NamedTuple):
    args: str  # what it takes, as /help shows it
    about: str
    run: Callable[[Chat, str], bool | None]  # acts on the chat it is given; False: leave


def run(chat: Chat, line: str) -> bool:
    """Run a slash command; False means leave."""
    name, _, arg = line.strip().partition(" ")
    command = COMMANDS.get(name)
    if command is None:
        chat.term.warn(f"unknown command {name}: /help lists them")
        return True
    return command.run(chat, arg.strip()) is not False


def help_text() -> str:
    """/help's text, from the one table of commands."""
    rows = [f"{f'{name} {command.args}'.strip():<22}{command.about}" for name, command in COMMANDS.items()]
    return "\n".join(rows + [KEYS])


def _help(chat: Chat, arg: str) -> None:
    chat.term.say(help_text())


def _exit(chat: Chat, arg: str) -> bool:
    return False


def _model(chat: Chat, arg: str) -> None:
    loaded = chat.session.loaded
    if not arg:
        chat.term.warn(f"model: {loaded.label} ({loaded.choice.reason})")
        return
    chat.load(replace(chat.session.settings, model=arg))  # on failure the old model stays
    chat.term.warn(f"switched to {chat.session.loaded.label}; the conversation goes on")


def _think(chat: Chat, arg: str) -> None:
    session = chat.session
    if arg not in ("on", "off"):
        state = "on" if session.loaded.generate_options(session.settings).think else "off"
        chat.term.warn(f"thinking is {state}; /think on or /think off")
        return
    session.set(think=arg == "on")
    chat.term.warn(f"thinking {arg}")


def _system(chat: Chat, arg: str) -> None:
    conv = chat.session.conversation
    conv.system = arg or None
    conv.save()
    chat.term.warn(f"system prompt {'set' if arg else 'cleared'}")


def _clear(chat: Chat, arg: str) -> None:
    old = chat.session.conversation
    chat.session.conversation = Conversation(model=old.model, system=old.system)
    chat.term.warn("new conversation (the previous one is saved: `qwenlocal chat --list`)")


def _retry(chat: Chat, arg: str) -> None:
    if not chat.session.retry():
        chat.term.warn("nothing to retry yet")
        return
    chat.answer()


def _reasoning(chat: Chat, arg: str) -> None:
    chat.term.say(chat.session.last_reasoning() or "(no reasoning in the last answer)")


def _save(chat: Chat, arg: str) -> None:
    if not arg:
        chat.term.warn("usage: /save FILE (.json or .md)")
        return
    path = Path(arg).expanduser()
    if path.suffix == ".md":
        path.write_text(to_markdown(chat.session.conversation), encoding="utf-8")
    else:
        chat.session.conversation.save(path)
    chat.term.warn(f"saved to {path}")


def _load(chat: Chat, arg: str) -> None:
    conv = chat.session.conversation = Conversation.find(arg or "last", warn=chat.term.warn)
    chat.term.warn(f"loaded '{conv.title}' ({len(conv.messages)} messages)")
    chat.replay()


def _image(chat: Chat, arg: str) -> None:
    from .. import images

    if not arg:
        chat.term.warn("usage: /image PATH [question]")
        return
    path, _, question = arg.partition(" ")
    image = images.read(path)  # a bad image: its one-line error, and nothing is sent
    chat.see()
    chat.pending.append(image)
    if question.strip():
        chat.send(question.strip())
    else:
        chat.term.warn(f"{image.name} ({image.width}x{image.height}) goes with your next message")


def _agent(chat: Chat, arg: str) -> None:
    if not arg:
        chat.term.warn("usage: /agent TASK (works in the current folder; /undo reverts its last step)")
        return
    from .agent import solve

    session = chat.session
    finished = solve(chat.term, arg, session.settings, Path.cwd(), loaded=session.loaded)
    session.conversation.add("user", f"/agent {arg}")
    session.conversation.add("assistant", finished.answer or f"({finished.reason})")


def _undo(chat: Chat, arg: str) -> None:
    from .agent import undo_step

    undo_step(chat.term, Path.cwd())


def _stats(chat: Chat, arg: str) -> None:
    if chat.session.last is None:
        chat.term.warn("no answer yet")
        return
    chat.term.table(stats_table(chat.session.last.stats))


def stats_table(stats: Stats):
    """The last answer's numbers, one per row, with units (the footer's line, spelled out)."""
    from rich.table import Table

    table = Table(title="last answer", title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(style="dim")
    reused = f"{stats.reused_tokens:,} of them reused" if stats.reused_tokens else ""
    percent = 100 * stats.ctx_used / max(stats.n_ctx, 1)
    rows = [
        ("generated", f"{stats.generated_tokens:,} tokens", f"{stats.reasoning_tokens:,} of them reasoning"),
        ("speed", f"{stats.generate_tps:.1f} tok/s", f"in {stats.generate_s:.2f}s"),
        ("prompt", f"{stats.prompt_tokens:,} tokens", reused),
        ("prompt speed", f"{stats.prompt_tps:.1f} tok/s", f"in {stats.prompt_s:.2f}s"),
        ("first token", f"{stats.ttft_s:.2f}s", ""),
        ("load", f"{stats.load_s:.2f}s", ""),
        ("context", f"{stats.ctx_used:,} / {stats.n_ctx:,}", f"{percent:.0f}% used"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


KEYS = """\
Enter sends; Alt+Enter (or Esc then Enter) starts a new line; pasted text is kept whole.
@path attaches a file's text to the message, or an image (PNG, JPEG, GIF, BMP) for the model to see."""

COMMANDS: dict[str, Command] = {
    "/help": Command("", "this list", _help),
    "/model": Command("NAME", "switch model (0.8b, 2b, 4b, 9b, 9b:q8_0 or a .gguf path)", _model),
    "/think": Command("on|off", "reasoning before answers", _think),
    "/system": Command("[TEXT]", "set (or, without text, clear) the system prompt", _system),
    "/clear": Command("", "start a new conversation (the current one stays saved)", _clear),
    "/retry": Command("", "answer the last message again", _retry),
    "/reasoning": Command("", "show the last answer's reasoning in full", _reasoning),
    "/save": Command("FILE", "save the conversation (.json to /load later, .md to read)", _save),
    "/load": Command("FILE", "continue a saved conversation (a file, an id, or a number from --list)", _load),
    "/stats": Command("", "speed and context of the last answer", _stats),
    "/image": Command(
        "PATH [TEXT]",
        "show the model an image (with TEXT: ask about it now; else with the next message)",
        _image,
    ),
    "/agent": Command("TASK", "let the model work on files here, with tools and your approval", _agent),
    "/undo": Command("", "revert the agent's last step", _undo),
    "/exit": Command("", "leave (Ctrl-D does too)", _exit),
}
