"""`qwenlocal chat`: a conversation in the terminal, or one message per line from a pipe.

On a terminal: prompt-toolkit input with history, multiline editing, completion of slash commands
and @paths, and Ctrl-C / Ctrl-D handling. From a pipe: each line is a message, each answer plain
text (or, with --json, one JSON object per line). The session itself (context, recording) is
`session.ChatSession`; the slash commands are in `slash.py`.

Like `run`, chat answers through a running `qwenlocal serve` of the same model file (engine/remote.py):
the server keeps the conversation's state, the terminal side is the same. Images (and `/agent`'s
image reading) need the model here: chat loads it the first time an image is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import typer

from ..config import Settings, data_dir
from ..conversation import Conversation
from ..errors import ExitCode, QwenlocalError, Terminated
from ..render import stats_line
from ..session import ChatSession, attach
from ..terminal import Terminal
from . import slash
from .options import (
    Cache,
    CacheMax,
    Ctx,
    GpuLayers,
    ImageTokens,
    Json,
    KvCache,
    MaxTokens,
    Mmproj,
    Model,
    NoServer,
    Offline,
    Pull,
    Seed,
    Server,
    ShowReasoning,
    System,
    Temperature,
    Think,
    ThinkBudget,
    Threads,
    Verbose,
    settings,
    terminal,
)


def chat(
    context: typer.Context,
    model: Model = None,
    system: System = None,
    think: Think = None,
    think_budget: ThinkBudget = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    seed: Seed = None,
    ctx: Ctx = None,
    kv_cache: KvCache = None,
    threads: Threads = None,
    gpu_layers: GpuLayers = None,
    json: Json = None,
    verbose: Verbose = None,
    show_reasoning: ShowReasoning = None,
    pull: Pull = None,
    offline: Offline = False,
    cache: Cache = None,
    cache_max: CacheMax = None,
    resume: Annotated[bool, typer.Option("--resume", "-r", help="Continue the last conversation.")] = False,
    open_: Annotated[
        str | None,
        typer.Option("--open", help="Continue a saved conversation: a number from --list, or an id."),
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List saved conversations and exit.")] = False,
    image_tokens: ImageTokens = None,
    mmproj: Mmproj = None,
    server: Server = None,
    no_server: NoServer = False,
) -> None:
    """Talk with a model in the terminal. Conversations are saved as they go.

    With piped stdin: one message per line, each answered in plain text (JSON lines with --json).
    """
    term = terminal(context)
    if list_:
        for i, conv in enumerate(Conversation.saved(warn=term.warn), 1):
            term.write(f"{i:3}  {conv.id}  {len(conv.messages):3} messages  {conv.title}\n")
        return
    start(term, settings(**locals()), resume, open_, server, not no_server)


class Chat:
    """A chat session on a terminal: what the user sees of it. `server` (--server URL) and
    `use_server` (False: --no-server) say where answers may come from (engine/remote.py)."""

    def __init__(
        self, term: Terminal, session: ChatSession, server: str | None = None, use_server: bool = False
    ) -> None:
        self.term = term
        self.session = session
        self.interactive = term.line_editor
        self.pending: list = []  # images from /image, for the next message
        self.server, self.use_server = server, use_server

    def load(self, settings: Settings) -> None:
        from .loading import open_model

        self.session.use(open_model(self.term, settings, server=self.server, use_server=self.use_server))
        self.session.settings = settings

    def send(self, text: str) -> None:
        from .. import images

        text, attached, notes = attach(text)  # a bad image stops the message here
        pictures = self.pending + attached
        if pictures:
            self.see()
        for note in notes + [f"attached {p.name} ({p.width}x{p.height} {p.format})" for p in pictures]:
            self.term.warn(note)
        self.pending = []
        self.session.conversation.add("user", text, images=[images.ref(p) for p in pictures])
        self.answer()

    def see(self) -> None:
        """Images need the model's projector: loaded (asked for and fetched) on first use; through
        a server, with the model itself (the server takes text)."""
        from .loading import ensure_vision, open_model

        session = self.session
        if not session.loaded.engine.can_attach_projector:
            self.term.warn("images are read by the model loaded here, not the server's: loading it")
            session.use(open_model(self.term, session.settings, vision=True))
        ensure_vision(self.term, session.settings, session.loaded)

    def answer(self) -> None:
        session, term, settings = self.session, self.term, self.session.settings
        if any(m.get("images") for m in session.conversation.messages):
            self.see()  # a resumed conversation, or a switched model
        dropped = session.fit_context()
        if session.grown:
            before, after = session.grown
            term.warn(
                f"context grown from {before:,} to {after:,} tokens to keep the whole conversation "
                f"(this machine's memory allows up to {session.loaded.engine.max_ctx:,})"
            )
        if dropped:
            term.warn(
                f"context full: moved the {dropped} oldest messages out of the context "
                "(they stay in the saved conversation)"
            )
        renderer = term.renderer(
            markdown=self.interactive and not settings.json,
            show_reasoning=settings.show_reasoning
            if settings.show_reasoning is not None
            else self.interactive,
            verbose=False,
            json_mode=settings.json,
            model=session.loaded.label,
            fold_reasoning=self.interactive,
        )
        events = session.answer()
        try:
            for event in events:
                renderer.handle(event)
        except KeyboardInterrupt as stop:
            events.close()
            renderer.interrupted()
            session.interrupted()
            if isinstance(stop, Terminated):  # SIGTERM ends the session, the partial answer saved
                raise
            term.warn(
                "interrupted: the partial answer is kept (marked as interrupted); /retry to answer again"
            )
            return
        self._after(session.last)

    def _after(self, done) -> None:
        if self.interactive:
            self.term.footer(done.stats)
            can_grow = self.session.loaded.engine.max_ctx > done.stats.n_ctx
            if done.stats.ctx_used > 0.8 * done.stats.n_ctx and not can_grow:
                self.term.warn(
                    f"the context is {100 * done.stats.ctx_used // done.stats.n_ctx}% full: the oldest turns "
                    "will be moved out next (/clear starts afresh)"
                )
        elif self.session.settings.verbose:
            self.term.warn(stats_line(done.stats))

    def replay(self) -> None:
        """Show a resumed conversation's last few turns, so the user knows where it stands."""
        for m in self.session.conversation.messages[-6:]:
            who = "you" if m["role"] == "user" else "qwen"
            text = m["content"] if len(m["content"]) < 400 else m["content"][:400] + "…"
            mark = " [interrupted]" if m.get("interrupted") else ""
            self.term.say(f"{who}{mark}: {text}")


def start(
    term: Terminal,
    settings: Settings,
    resume: bool,
    open_ref: str | None,
    server: str | None = None,
    use_server: bool = False,
) -> None:
    conversation = (
        Conversation.find(open_ref, warn=term.warn)
        if (resume or open_ref)
        else Conversation(system=settings.system)
    )
    chat = Chat(term, ChatSession(settings, conversation), server, use_server)
    chat.load(settings)
    try:
        if not chat.interactive:
            _piped(chat)
            return
        if resume or open_ref:
            term.warn(f"resuming '{conversation.title}' ({len(conversation.messages)} messages)")
            chat.replay()
        term.warn(f"{chat.session.loaded.label} · /help for commands · Ctrl-D to leave")
        _loop(chat)
    finally:
        chat.session.close()


def _piped(chat: Chat) -> None:
    """Not a terminal: one message per line; blank lines are skipped; slash commands work."""
    for raw in _utf8_lines(chat.term.stdin):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not slash.run(chat, line):
                return
            continue
        chat.send(line)
        chat.term.write("" if chat.session.settings.json else "\n")  # an empty line between answers


def _utf8_lines(stdin) -> Iterator[str]:
    """stdin's lines, decoded here from its bytes where it has them: a line that is not UTF-8
    stops the chat with exit 7 and its line number (what was answered before it is saved)."""
    source = getattr(stdin, "buffer", None) or stdin
    for number, raw in enumerate(source, 1):
        try:
            line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            line.encode("utf-8")  # the lone surrogates a `surrogateescape` stream hands on
        except UnicodeError:
            raise QwenlocalError(
                f"line {number} of stdin is not valid UTF-8",
                hint="convert it first, e.g. `iconv -f latin1 -t utf-8 file | qwenlocal chat`",
                code=ExitCode.BAD_INPUT,
            ) from None
        yield line


def _loop(chat: Chat) -> None:
    prompt = _prompt_session()
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
            chat.term.warn("Ctrl-C again (or Ctrl-D) to leave")
            continue
        except EOFError:
            return
        interrupted_at_prompt = False
        if not text.strip():
            continue
        try:
            if text.lstrip().startswith("/"):
                if not slash.run(chat, text.strip()):
                    return
            else:
                chat.send(text)
        except QwenlocalError as error:  # a bad command or message: say so and keep the session
            chat.term.error(error)


def _completer():
    from prompt_toolkit.completion import Completer, Completion, PathCompleter
    from prompt_toolkit.document import Document

    paths = PathCompleter(expanduser=True)

    class ChatCompleter(Completer):
        def get_completions(self, document, complete_event):
            text = document.text_before_cursor
            if text.startswith("/") and " " not in text:
                for name in slash.COMMANDS:
                    if name.startswith(text):
                        yield Completion(name, start_position=-len(text))
                return
            word = document.get_word_before_cursor(WORD=True)
            if word.startswith("@"):
                sub = Document(word[1:], len(word) - 1)
                yield from paths.get_completions(sub, complete_event)

    return ChatCompleter()


def _prompt_session():
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
