"""The terminal side of `qwenlocal chat`: prompt-toolkit input with history, multiline editing,
completion of slash commands and @paths, and Ctrl-C / Ctrl-D handling."""

from __future__ import annotations

import sys

from .chat import COMMANDS, ChatSession, replay
from .config import Settings, data_dir
from .conversation import Conversation
from .errors import QwenlocalError, Terminated
from .render import is_tty, warn


def _completer():
    from prompt_toolkit.completion import Completer, Completion, PathCompleter
    from prompt_toolkit.document import Document

    paths = PathCompleter(expanduser=True)

    class ChatCompleter(Completer):
        def get_completions(self, document, complete_event):
            text = document.text_before_cursor
            if text.startswith("/") and " " not in text:
                for name in COMMANDS:
                    if name.startswith(text):
                        yield Completion(name, start_position=-len(text))
                return
            word = document.get_word_before_cursor(WORD=True)
            if word.startswith("@"):
                sub = Document(word[1:], len(word) - 1)
                yield from paths.get_completions(sub, complete_event)

    return ChatCompleter()


def _session():
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    @bindings.add("escape", "enter")  # Alt+Enter, or Esc then Enter: a new line
    def _(event):
        event.current_buffer.insert_text("\n")

    history = data_dir() / "chat_history"
    history.parent.mkdir(parents=True, exist_ok=True)
    return PromptSession(
        history=FileHistory(str(history)),
        completer=_completer(),
        complete_while_typing=False,
        key_bindings=bindings,
        multiline=False,  # Enter sends; pasted newlines stay in the message (bracketed paste)
        prompt_continuation="… ",
    )


def chat(settings: Settings, resume: bool, open_ref: str | None) -> None:
    conversation = (
        Conversation.find(open_ref) if (resume or open_ref) else Conversation(system=settings.system)
    )
    interactive = is_tty(sys.stdin) and is_tty(sys.stdout)
    session = ChatSession(settings, conversation, interactive)
    session.load()
    try:
        if not interactive:
            from .chat import run_piped

            run_piped(session)
            return
        if resume or open_ref:
            warn(f"resuming '{conversation.title}' ({len(conversation.messages)} messages)")
            replay(conversation)
        warn(f"{session.loaded.label} · /help for commands · Ctrl-D to leave")
        _loop(session)
    finally:
        session.close()


def _loop(session: ChatSession) -> None:
    prompt = _session()
    interrupted_at_prompt = False
    while True:
        try:
            text = prompt.prompt("› ")
        except KeyboardInterrupt as stop:
            if isinstance(stop, Terminated):  # SIGTERM: leave now, not on a second Ctrl-C
                raise
            if interrupted_at_prompt:
                return
            interrupted_at_prompt = True
            warn("Ctrl-C again (or Ctrl-D) to leave")
            continue
        except EOFError:
            return
        interrupted_at_prompt = False
        if not text.strip():
            continue
        try:
            if text.lstrip().startswith("/"):
                if not session.command(text.strip()):
                    return
            else:
                session.send(text)
        except QwenlocalError as error:  # a bad command or message: say so and keep the session
            hint = f" (hint: {error.hint})" if error.hint else ""
            warn(f"error: {error.message}{hint}")
