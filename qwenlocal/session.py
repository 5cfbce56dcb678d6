"""`qwenlocal chat`: the conversation loop and its slash commands.

The terminal parts (prompt-toolkit input, Rich output) are in `repl.py` and `render.py`; this
module is the session itself, so the same loop serves a terminal and piped stdin (one message per
line, each answer in plain text or, with --json, one JSON object per line).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from .config import Settings
from .conversation import Conversation
from .errors import Exit, QwenlocalError, Terminated
from .events import Done
from .loader import Loaded, open_model
from .render import Renderer, footer, loading, stats_line, warn

HELP = """\
/help                 this list
/model NAME           switch model (0.8b, 2b, 4b, 9b, 9b:q8_0 or a .gguf path)
/think on|off         reasoning before answers
/system [TEXT]        set (or, without text, clear) the system prompt
/clear                start a new conversation (the current one stays saved)
/retry                answer the last message again
/reasoning            show the last answer's reasoning in full
/save FILE            save the conversation (.json to /load later, .md to read)
/load FILE            continue a saved conversation (a file, an id, or a number from --list)
/stats                speed and context of the last answer
/agent TASK           let the model work on files here, with tools and your approval
/undo                 revert the agent's last step
/exit                 leave (Ctrl-D does too)
Enter sends; Alt+Enter (or Esc then Enter) starts a new line; pasted text is kept whole.
@path attaches a file's text to the message."""

COMMANDS = [
    "/help",
    "/model",
    "/think",
    "/system",
    "/clear",
    "/retry",
    "/reasoning",
    "/save",
    "/load",
    "/stats",
    "/agent",
    "/undo",
    "/exit",
]
MAX_ATTACH = 200_000  # characters of one attached file


class ChatSession:
    def __init__(self, settings: Settings, conversation: Conversation, interactive: bool) -> None:
        self.settings = settings
        self.conversation = conversation
        self.interactive = interactive
        self.loaded: Loaded | None = None
        self.last: Done | None = None

    # -- model -------------------------------------------------------------------------------

    def load(self) -> None:
        with loading("Loading model"):
            loaded = open_model(self.settings)
        if self.loaded is not None:
            self.loaded.engine.close()
        self.loaded = loaded
        self.conversation.model = loaded.label
        for message in loaded.warnings:
            warn(message)

    def close(self) -> None:
        if self.loaded is not None:
            self.loaded.engine.close()

    # -- a turn --------------------------------------------------------------------------------

    def send(self, text: str) -> None:
        self.conversation.add("user", attach_files(text))
        self.answer()

    def _fit_context(self) -> None:
        """Drop the oldest turns, with a notice, until the prompt leaves room for an answer."""
        engine, conv = self.loaded.engine, self.conversation
        options = self.loaded.generate_options(self.settings)
        reserve = min(2048, engine.n_ctx // 4)
        dropped = 0
        while True:
            try:
                n = len(engine.prompt_tokens(conv.for_model(), options.think))
            except QwenlocalError as error:
                if error.code != Exit.CONTEXT_OVERFLOW:
                    raise
                n = engine.n_ctx
            if n + reserve <= engine.n_ctx:
                break
            moved = conv.drop_oldest_turn()
            if not moved:
                conv.messages.pop()  # the message that cannot fit; the conversation stays as it was
                conv.save()
                raise QwenlocalError(
                    f"this message is {n} tokens; with room for an answer the context holds {engine.n_ctx}",
                    hint="shorten it, or restart with a larger --ctx",
                    code=Exit.CONTEXT_OVERFLOW,
                )
            dropped += moved
        if dropped:
            warn(
                f"context full: moved the {dropped} oldest messages out of the context "
                "(they stay in the saved conversation)"
            )

    def answer(self) -> None:
        self._fit_context()
        loaded, settings = self.loaded, self.settings
        options = loaded.generate_options(settings)
        show = settings.show_reasoning if settings.show_reasoning is not None else self.interactive
        renderer = Renderer(
            markdown=self.interactive and not settings.json,
            show_reasoning=show,
            verbose=False,
            json_mode=settings.json,
            model=loaded.label,
            fold_reasoning=self.interactive,
        )
        try:
            for event in loaded.engine.stream(self.conversation.for_model(), options):
                renderer.handle(event)
                if isinstance(event, Done):
                    self.last = event
        except KeyboardInterrupt as stop:
            renderer.interrupted()
            partial = renderer.answer_so_far
            self.conversation.add("assistant", partial, reasoning=renderer.reasoning_so_far, interrupted=True)
            if isinstance(stop, Terminated):  # SIGTERM ends the session, the partial answer saved
                raise
            warn("interrupted: the partial answer is kept (marked as interrupted); /retry to answer again")
            return
        done = self.last
        self.conversation.add(
            "assistant",
            done.answer,
            reasoning=done.reasoning,
            finish=done.finish if done.finish != "stop" else None,
        )
        if self.interactive:
            footer(done.stats)
            if done.stats.ctx_used > 0.8 * done.stats.n_ctx:
                warn(
                    f"the context is {100 * done.stats.ctx_used // done.stats.n_ctx}% full: the oldest turns "
                    "will be moved out next (/clear starts afresh)"
                )
        elif settings.verbose:
            warn(stats_line(done.stats))

    # -- slash commands ------------------------------------------------------------------------

    def command(self, line: str) -> bool:
        """Run a slash command; False means leave."""
        name, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        handler = getattr(self, "cmd_" + name.lstrip("/"), None)
        if handler is None or name not in COMMANDS:
            warn(f"unknown command {name}: /help lists them")
            return True
        return handler(arg) is not False

    def cmd_help(self, arg: str) -> None:
        sys.stderr.write(HELP + "\n")

    def cmd_exit(self, arg: str) -> bool:
        return False

    def cmd_model(self, arg: str) -> None:
        if not arg:
            warn(f"model: {self.loaded.label} ({self.loaded.choice.reason})")
            return
        previous = self.settings
        self.settings = replace(self.settings, model=arg)
        try:
            self.load()
        except QwenlocalError:
            self.settings = previous
            raise
        warn(f"switched to {self.loaded.label}; the conversation goes on")

    def cmd_think(self, arg: str) -> None:
        if arg not in ("on", "off"):
            state = "on" if self.loaded.generate_options(self.settings).think else "off"
            warn(f"thinking is {state}; /think on or /think off")
            return
        self.settings = replace(self.settings, think=arg == "on")
        warn(f"thinking {arg}")

    def cmd_system(self, arg: str) -> None:
        self.conversation.system = arg or None
        self.conversation.save()
        warn(f"system prompt {'set' if arg else 'cleared'}")

    def cmd_clear(self, arg: str) -> None:
        self.conversation = Conversation(model=self.conversation.model, system=self.conversation.system)
        warn("new conversation (the previous one is saved: `qwenlocal chat --list`)")

    def cmd_retry(self, arg: str) -> None:
        conv = self.conversation
        index = conv.last_user_index()
        if index is None:
            warn("nothing to retry yet")
            return
        del conv.messages[index + 1 :]
        conv.save()
        self.answer()

    def cmd_reasoning(self, arg: str) -> None:
        reasoning = next(
            (m.get("reasoning") for m in reversed(self.conversation.messages) if m["role"] == "assistant"),
            None,
        )
        sys.stderr.write((reasoning or "(no reasoning in the last answer)") + "\n")

    def cmd_save(self, arg: str) -> None:
        if not arg:
            warn("usage: /save FILE (.json or .md)")
            return
        path = Path(arg).expanduser()
        if path.suffix == ".md":
            path.write_text(to_markdown(self.conversation), encoding="utf-8")
        else:
            self.conversation.save(path)
        warn(f"saved to {path}")

    def cmd_load(self, arg: str) -> None:
        self.conversation = Conversation.find(arg or "last")
        warn(f"loaded '{self.conversation.title}' ({len(self.conversation.messages)} messages)")
        replay(self.conversation)

    def cmd_agent(self, arg: str) -> None:
        if not arg:
            warn("usage: /agent TASK (works in the current folder; /undo reverts its last step)")
            return
        from .agent.main import solve

        finished = solve(arg, self.settings, Path.cwd(), loaded=self.loaded)
        self.conversation.add("user", f"/agent {arg}")
        self.conversation.add("assistant", finished.answer or f"({finished.reason})")

    def cmd_undo(self, arg: str) -> None:
        from .agent.main import undo

        undo(Path.cwd())

    def cmd_stats(self, arg: str) -> None:
        if self.last is None:
            warn("no answer yet")
            return
        sys.stderr.write(json.dumps(self.last.stats.as_dict(), indent=1) + "\n")


def attach_files(text: str) -> str:
    """`@path` words become the file's text, appended to the message."""
    attachments = []
    for word in text.split():
        if not word.startswith("@") or len(word) < 2:
            continue
        path = Path(word[1:].rstrip(".,;:!?")).expanduser()
        if not path.is_file():
            continue
        try:
            data = path.read_bytes()
            if b"\x00" in data[:8192]:
                raise UnicodeDecodeError("utf-8", data, 0, 1, "binary")
            content = data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            warn(f"not attached: {path} is not a readable text file")
            continue
        if len(content) > MAX_ATTACH:
            warn(f"{path} is long: only its first {MAX_ATTACH:,} characters are attached")
            content = content[:MAX_ATTACH]
        attachments.append(f"File {path}:\n```\n{content.rstrip()}\n```")
        warn(f"attached {path} ({len(content):,} characters)")
    return "\n\n".join([text, *attachments]) if attachments else text


def to_markdown(conv: Conversation) -> str:
    parts = [f"# {conv.title or 'Conversation'}\n"]
    if conv.system:
        parts.append(f"_System:_ {conv.system}\n")
    for m in conv.messages:
        who = {"user": "You", "assistant": "Qwen"}.get(m["role"], m["role"])
        mark = " _(interrupted)_" if m.get("interrupted") else ""
        parts.append(f"**{who}:**{mark}\n\n{m['content']}\n")
    return "\n".join(parts)


def replay(conv: Conversation) -> None:
    """Show a resumed conversation's last few turns, so the user knows where it stands."""
    for m in conv.messages[-6:]:
        who = "you" if m["role"] == "user" else "qwen"
        text = m["content"] if len(m["content"]) < 400 else m["content"][:400] + "…"
        mark = " [interrupted]" if m.get("interrupted") else ""
        sys.stderr.write(f"{who}{mark}: {text}\n")


def run_piped(session: ChatSession) -> None:
    """Not a terminal: one message per line; blank lines are skipped; slash commands work."""
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not session.command(line):
                return
            continue
        session.send(line)
        if not session.settings.json:
            sys.stdout.write("\n")  # an empty line between answers
        sys.stdout.flush()
