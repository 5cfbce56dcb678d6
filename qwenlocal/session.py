"""A chat session: a conversation with a loaded model.

It keeps the prompt inside the context (dropping the oldest turns), streams each answer as
events while collecting it, and records it in the conversation, whole or, when stopped, partial
and marked. It neither prints nor asks: `commands/chat.py` shows the events and the notices.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .bounded import TooLarge, read_file
from .config import Settings
from .conversation import Conversation
from .errors import ExitCode, QwenlocalError
from .events import Done, Event, ReasoningDelta, TextDelta

if TYPE_CHECKING:  # the loader imports the engine: not at start-up
    from .images import Image
    from .models.loader import Loaded

MAX_ATTACH = 200_000  # characters of one attached file


class ChatSession:
    def __init__(self, settings: Settings, conversation: Conversation) -> None:
        self.settings = settings
        self.conversation = conversation
        self.loaded: Loaded | None = None
        self.last: Done | None = None
        self._answer: list[str] | None = None  # the answer being streamed, None between answers
        self._reasoning: list[str] = []
        self.grown: tuple[int, int] | None = None  # the context's size before and after fit_context grew it

    def use(self, loaded: Loaded) -> None:
        """Continue with this model (the previous one is closed)."""
        if self.loaded is not None:
            self.loaded.engine.close()
        self.loaded = loaded
        self.conversation.model = loaded.label

    def set(self, **settings) -> None:
        self.settings = replace(self.settings, **settings)

    def close(self) -> None:
        if self.loaded is not None:
            self.loaded.engine.close()

    def fit_context(self) -> int:
        """Make the prompt leave room for an answer: first grow the context where memory allows
        (its state moves into the larger one, nothing is read again; `grown` says from what to
        what), then drop the oldest turns. Returns how many messages were moved out (they stay
        in the saved conversation)."""
        engine, conv = self.loaded.engine, self.conversation
        options = self.loaded.generate_options(self.settings)
        dropped = 0
        self.grown = None
        while True:
            reserve = min(2048, engine.n_ctx // 4)
            try:
                n = len(engine.prompt_tokens(conv.for_model(), options.think))
            except QwenlocalError as error:
                if error.code != ExitCode.CONTEXT_OVERFLOW:
                    raise
                n = engine.n_ctx
            if n + reserve <= engine.n_ctx:
                return dropped
            before = engine.n_ctx
            if (engine.grow(n + reserve) or 0) > before:
                self.grown = (self.grown or (before, 0))[0], engine.n_ctx
                continue
            moved = conv.drop_oldest_turn()
            if not moved:
                conv.messages.pop()  # the message that cannot fit; the conversation stays as it was
                conv.save()
                raise QwenlocalError(
                    f"this message is {n} tokens; with room for an answer the context holds {engine.n_ctx}",
                    hint="shorten it, or restart with a larger --ctx",
                    code=ExitCode.CONTEXT_OVERFLOW,
                )
            dropped += moved

    def answer(self) -> Iterator[Event]:
        """Stream the answer to the conversation as it stands, and record it when done. If the
        consumer is stopped (Ctrl-C, SIGTERM) it calls `interrupted()` to keep the partial one."""
        options = self.loaded.generate_options(self.settings)
        self._answer, self._reasoning = [], []
        from .engine.base import instructions  # not at start-up

        messages = self.conversation.for_model()
        keep = [instructions(messages), messages] if messages[0]["role"] == "system" else [messages]
        for event in self.loaded.engine.stream(messages, options, keep=keep):
            if isinstance(event, TextDelta):
                self._answer.append(event.text)
            elif isinstance(event, ReasoningDelta):
                self._reasoning.append(event.text)
            elif isinstance(event, Done):
                self.last, self._answer = event, None
                finish = event.finish if event.finish != "stop" else None
                self.conversation.add("assistant", event.answer, reasoning=event.reasoning, finish=finish)
            yield event

    def interrupted(self) -> None:
        """Keep what was streamed of an answer that was stopped, marked as interrupted."""
        if self._answer is None:
            return
        partial, self._answer = "".join(self._answer), None
        self.conversation.add("assistant", partial, reasoning="".join(self._reasoning), interrupted=True)

    def retry(self) -> bool:
        """Forget the answers after the last user message; False when there is none."""
        conv = self.conversation
        index = conv.last_user_index()
        if index is None:
            return False
        del conv.messages[index + 1 :]
        conv.save()
        return True

    def last_reasoning(self) -> str | None:
        return next(
            (m.get("reasoning") for m in reversed(self.conversation.messages) if m["role"] == "assistant"),
            None,
        )


def attach(text: str) -> tuple[str, list[Image], list[str]]:
    """A chat message's `@path` words, read once: a text file's text is appended to the message,
    an image is shown to the model (exit 7 for a bad one: the message is then not sent, so the
    model never answers without an image the user gave). Returns the message, the images and what
    the user should be told (attached, cut short, not attached)."""
    from .images import is_image, read

    attachments, pictures, notes = [], [], []
    for word in text.split():
        if not word.startswith("@") or len(word) < 2:
            continue
        path = Path(word[1:].rstrip(".,;:!?")).expanduser()
        if not path.is_file():
            continue
        data, cut = _start_of(path)
        if data is not None and is_image(data):
            pictures.append(read(path))
            continue
        content = _text(data, final=not cut)
        if content is None:
            notes.append(f"not attached: {path} is not a readable text file")
            continue
        if cut or len(content) > MAX_ATTACH:
            notes.append(f"{path} is long: only its first {MAX_ATTACH:,} characters are attached")
            content = content[:MAX_ATTACH]
        attachments.append(f"File {path}:\n```\n{content.rstrip()}\n```")
        notes.append(f"attached {path} ({len(content):,} characters)")
    return ("\n\n".join([text, *attachments]) if attachments else text), pictures, notes


def _start_of(path: Path) -> tuple[bytes | None, bool]:
    """At most what can be attached of a file (a huge one is cut, never read whole), and whether
    it was cut; None when it cannot be read."""
    try:
        return read_file(path, 4 * MAX_ATTACH), False
    except TooLarge as over:
        return over.data, True
    except QwenlocalError:
        return None, False


def _text(data: bytes | None, final: bool) -> str | None:
    """UTF-8 text, or None for binary data (a cut file may end inside a character)."""
    if data is None or b"\x00" in data[:8192]:
        return None
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
    except UnicodeDecodeError:
        return None
