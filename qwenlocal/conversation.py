"""A chat conversation, saved to disk after every change so nothing is ever lost.

Each conversation is one JSON file in `<data dir>/conversations/`, written atomically (a temporary
file renamed over the old one), so a crash or a killed terminal leaves the last complete state.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import data_dir
from .errors import ExitCode, QwenlocalError


def conversations_dir() -> Path:
    return data_dir() / "conversations"


def _ignore(text: str) -> None:
    pass


@dataclass
class Conversation:
    id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6])
    title: str = ""
    model: str = ""
    system: str | None = None
    messages: list[dict] = field(default_factory=list)  # role, content, [reasoning, interrupted]
    dropped: list[dict] = field(default_factory=list)  # turns moved out of the context, kept here
    path: Path | None = None

    # -- what the model sees -------------------------------------------------------------

    def for_model(self) -> list[dict]:
        """Messages for the chat template: the system prompt first, our own keys left out."""
        out = [{"role": "system", "content": self.system}] if self.system else []
        for m in self.messages:
            message = {"role": m["role"], "content": _content(m)}
            if m.get("reasoning"):
                message["reasoning_content"] = m["reasoning"]
            if m.get("tool_calls"):
                message["tool_calls"] = m["tool_calls"]
            out.append(message)
        return out

    def add(self, role: str, content: str, **extra) -> dict:
        message = {"role": role, "content": content, **{k: v for k, v in extra.items() if v}}
        self.messages.append(message)
        if role == "user" and not self.title:
            self.title = " ".join(content.split())[:60]
        self.save()
        return message

    def turns(self) -> list[list[dict]]:
        """The messages grouped by user turn (a user message and what answered it)."""
        groups: list[list[dict]] = []
        for m in self.messages:
            if m["role"] == "user" or not groups:
                groups.append([])
            groups[-1].append(m)
        return groups

    def drop_oldest_turn(self) -> int:
        """Move the oldest turn out of the context (into `dropped`); returns messages moved."""
        turns = self.turns()
        if len(turns) < 2:
            return 0
        n = len(turns[0])
        self.dropped += self.messages[:n]
        del self.messages[:n]
        self.save()
        return n

    def last_user_index(self) -> int | None:
        return next(
            (i for i in range(len(self.messages) - 1, -1, -1) if self.messages[i]["role"] == "user"), None
        )

    # -- disk ----------------------------------------------------------------------------

    def save(self, path: Path | None = None) -> Path:
        path = path or self.path or conversations_dir() / f"{self.id}.json"
        if self.path is None and path.parent == conversations_dir():
            self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
            os.replace(tmp, path)
        finally:  # a failed write (disk full, text that is not UTF-8) leaves no empty file behind
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: Path) -> Conversation:
        try:
            data = _checked(json.loads(Path(path).read_text(encoding="utf-8")))
            conv = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (OSError, ValueError, TypeError) as exc:
            raise QwenlocalError(
                f"cannot read the conversation {path}: {exc}",
                hint="`qwenlocal chat --list` shows the saved conversations",
                code=ExitCode.BAD_INPUT,
            ) from None
        if Path(path).parent == conversations_dir():
            conv.path = Path(path)
        return conv

    @classmethod
    def _readable(cls, warn: Callable[[str], None]) -> Iterator[Conversation]:
        """Saved conversations, newest first; a damaged file is skipped (and `warn` told), so that
        one bad file does not hide all the others."""
        folder = conversations_dir()
        if not folder.is_dir():
            return
        paths = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for path in paths:
            try:
                yield cls.load(path)
            except QwenlocalError as error:
                warn(f"skipped: {error.message}")

    @classmethod
    def saved(cls, warn: Callable[[str], None] = _ignore) -> list[Conversation]:
        """Saved conversations that can be read, newest first (the numbers of `--list`)."""
        return list(cls._readable(warn))

    @classmethod
    def find(cls, ref: str | None, warn: Callable[[str], None] = _ignore) -> Conversation:
        """`None` or "last": the newest; a number: from `--list`; else an id or a path."""
        if ref in (None, "", "last"):
            newest = next(cls._readable(warn), None)
            if newest is None:
                raise QwenlocalError(
                    "there is no saved conversation yet",
                    hint="start one with `qwenlocal chat`",
                    code=ExitCode.BAD_INPUT,
                )
            return newest
        if ref.isdigit():
            saved = cls.saved(warn)
            if 1 <= int(ref) <= len(saved):
                return saved[int(ref) - 1]
        by_id = conversations_dir() / f"{ref}.json"
        if by_id.is_file():
            return cls.load(by_id)
        if Path(ref).expanduser().is_file():
            return cls.load(Path(ref).expanduser())
        raise QwenlocalError(
            f"no saved conversation '{ref}'",
            hint="`qwenlocal chat --list` shows them",
            code=ExitCode.BAD_INPUT,
        )


def _content(m: dict):
    """A message's content for the model: with its images (`images`: where they are) as parts."""
    if not m.get("images"):
        return m["content"]
    from .images import attached

    return attached(m["images"], m["content"])


def to_markdown(conv: Conversation) -> str:
    """The conversation to read (`/save notes.md`)."""
    parts = [f"# {conv.title or 'Conversation'}\n"]
    if conv.system:
        parts.append(f"_System:_ {conv.system}\n")
    for m in conv.messages:
        who = {"user": "You", "assistant": "Qwen"}.get(m["role"], m["role"])
        mark = " _(interrupted)_" if m.get("interrupted") else ""
        pictures = "".join(f"[image: {i.get('path')}]\n\n" for i in m.get("images", ()))
        parts.append(f"**{who}:**{mark}\n\n{pictures}{m['content']}\n")
    return "\n".join(parts)


ROLES = ("system", "user", "assistant", "tool")


def _checked(data: Any) -> dict:
    """The JSON of a conversation file, checked here, so that a hand-edited or foreign file fails
    with its name instead of somewhere in the chat template."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    for key in ("id", "title", "model"):
        if not isinstance(data.get(key, ""), str):
            raise ValueError(f"'{key}' is not text")
    if not isinstance(data.get("system"), str | None):
        raise ValueError("'system' is not text")
    for key in ("messages", "dropped"):
        items = data.get(key, [])
        if not isinstance(items, list) or not all(map(_is_message, items)):
            raise ValueError(f"'{key}' is not a list of messages, each with a role and a text content")
    return data


def _is_message(m: Any) -> bool:
    return (
        isinstance(m, dict)
        and m.get("role") in ROLES
        and isinstance(m.get("content"), str)
        and isinstance(m.get("reasoning"), str | None)
        and isinstance(m.get("tool_calls", []), list)
        and isinstance(m.get("images", []), list)
    )
