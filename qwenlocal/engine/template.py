"""The GGUF's own chat template, rendered in pure Python: the prompt text, its control tokens, the
turn boundary, and the token count that decides whether the prompt fits.

Nothing here touches llama.cpp: the vocabulary comes in as a `controls()` callable (text -> id of
each control token) and a `tokenize(text)` callable, so all of it is testable without a model.
The rendering is llama-cpp-python's Jinja2ChatFormatter, done the same way with jinja2 directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from ..errors import ExitCode, QwenlocalError
from .markup import Shield

Piece = tuple[str, int | None]  # a run of plain text (None), or a control token's text and id
Tokenize = Callable[[str], list[int]]

# A rendered prompt longer than this is first counted in bounded pieces, so that a huge input is
# refused without tokenizing all of it at once (50 MiB of stdin took 3.3 GB that way).
COUNT_FIRST_CHARS = 1 << 18
COUNT_CHUNK_CHARS = 1 << 16


class ChatTemplate:
    """Renders conversations with `enable_thinking`; untrusted text never becomes markup."""

    def __init__(self, source: str | None, name: str, controls: Callable[[], dict[str, int]]) -> None:
        self.source, self.name = source, name
        self._controls = controls
        self._compiled: dict[bool, object] = {}
        self._shield: Shield | None = None

    @property
    def shield(self) -> Shield:
        """The vocabulary's control tokens, found once, on first use (0.1-0.2 s for Qwen's 248K)."""
        if self._shield is None:
            self._shield = Shield(self._controls())
        return self._shield

    def render(
        self, messages: list[dict], think: bool, tools: list[dict] | None = None, generation: bool = True
    ) -> str:
        """The prompt as text, with `enable_thinking` set.

        `generation=False` leaves out the assistant's opening (`<|im_start|>assistant...`): the part
        that later turns render differently, so the end of the rest is a turn boundary."""
        return "".join(text for text, _ in self.pieces(messages, think, tools, generation))

    def pieces(
        self, messages: list[dict], think: bool, tools: list[dict] | None = None, generation: bool = True
    ) -> list[Piece]:
        """The rendered prompt as plain text runs and the template's own control tokens."""
        if not self.source:
            raise QwenlocalError(
                f"{self.name} has no chat template",
                hint="use a chat (instruct) GGUF of Qwen3.5, e.g. `qwenlocal pull 2b`",
                code=ExitCode.MODEL_FILE,
            )
        if generation not in self._compiled:
            self._compiled[generation] = _compile(self.source)
        shield = self.shield
        try:
            rendered = self._compiled[generation].render(
                messages=shield.hide(messages),
                tools=shield.hide(tools),
                enable_thinking=think,
                add_generation_prompt=generation,
                **_GLOBALS,
            )
        except Exception as exc:  # the template's raise_exception() and jinja errors
            raise QwenlocalError(
                f"the chat template rejected the conversation: {exc}", code=ExitCode.BAD_INPUT
            ) from None
        return list(shield.pieces(rendered))


def _raise_exception(message: str):
    raise ValueError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    # Transformers' chat-template JSON, as llama-cpp-python's formatter renders it
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


# What llama-cpp-python's Jinja2ChatFormatter passes every template besides the conversation.
_GLOBALS = {
    "eos_token": "<|im_end|>",
    "bos_token": "",
    "raise_exception": _raise_exception,
    "functions": None,
    "function_call": None,
    "tool_choice": None,
    "strftime_now": lambda f: datetime.now().strftime(f),
}


def _compile(source: str):
    """The template in the sandboxed environment Transformers and llama-cpp-python use."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class IgnoreGenerationTags(jinja2.ext.Extension):
        """Pass-through for HuggingFace's `{% generation %}` chat-template tag."""

        tags = {"generation"}

        def parse(self, parser):
            parser.stream.skip(1)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    environment = ImmutableSandboxedEnvironment(
        loader=jinja2.BaseLoader(),
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[IgnoreGenerationTags, jinja2.ext.loopcontrols],
    )
    environment.filters["tojson"] = _tojson
    return environment.from_string(source)


def turn_boundary(history: list[int], prompt: list[int]) -> int:
    """Where `prompt` stops matching `history` (the conversation rendered without the assistant's
    opening): what later turns render identically, and so where a checkpoint can be reused."""
    return next((i for i, (a, b) in enumerate(zip(history, prompt, strict=False)) if a != b), len(history))


def tokens_of(pieces: Iterable[Piece], tokenize: Tokenize) -> list[int]:
    """Plain runs tokenized as text, never as control tokens; markup as its token."""
    tokens: list[int] = []
    for text, control in pieces:
        tokens += [control] if control is not None else tokenize(text)
    return tokens


def fitting_tokens(pieces: list[Piece], tokenize: Tokenize, n_ctx: int, n_ctx_train: int) -> list[int]:
    """The prompt's tokens; refuse a prompt that does not fit (never truncate it)."""
    size = sum(len(text) for text, _ in pieces)
    if size > COUNT_FIRST_CHARS:
        count, counted = _count_at_least(pieces, tokenize, n_ctx)
        if count >= n_ctx:
            estimate = count * size // max(counted, 1)
            told = f"about {estimate}" if counted < size else str(count)
            raise overflow(told, estimate, n_ctx, n_ctx_train)
    tokens = tokens_of(pieces, tokenize)
    if len(tokens) >= n_ctx:
        raise overflow(str(len(tokens)), len(tokens), n_ctx, n_ctx_train)
    return tokens


def count_tokens(pieces: list[Piece], tokenize: Tokenize, limit: int) -> int:
    """The prompt's tokens, or a count of at least `limit` when it has that many (a huge prompt
    is counted in slices and not past the limit, so memory stays small)."""
    if sum(len(text) for text, _ in pieces) > COUNT_FIRST_CHARS:
        return _count_at_least(pieces, tokenize, limit)[0]
    return len(tokens_of(pieces, tokenize))


def _count_at_least(pieces: list[Piece], tokenize: Tokenize, limit: int) -> tuple[int, int]:
    """Tokens counted a slice at a time until `limit`: (count, characters counted).

    Slices end at line ends, so the count is close to exact while memory stays small."""
    count = chars = 0
    for text, control in pieces:
        for chunk in [text] if control is not None else _chunks(text, COUNT_CHUNK_CHARS):
            count += 1 if control is not None else len(tokenize(chunk))
            chars += len(chunk)
            if count >= limit:
                return count, chars
    return count, chars


def overflow(told: str, n: int, n_ctx: int, n_ctx_train: int) -> QwenlocalError:
    if n < n_ctx_train:
        hint = f"shorten the input or raise the context, e.g. --ctx {min(_round_up(n * 2), n_ctx_train)}"
    else:
        hint = f"shorten the input: this model reads at most {n_ctx_train} tokens"
    return QwenlocalError(
        f"the prompt is {told} tokens but the context holds {n_ctx}",
        hint=hint,
        code=ExitCode.CONTEXT_OVERFLOW,
    )


def _chunks(text: str, size: int) -> Iterator[str]:
    """`text` in slices of at most `size` characters, each cut after a line end where one is."""
    start = 0
    while start < len(text):
        end = start + size
        if end < len(text):
            cut = text.rfind("\n", start, end)
            end = cut + 1 if cut > start else end
        yield text[start:end]
        start = end


def _round_up(n: int) -> int:
    size = 1024
    while size < n:
        size *= 2
    return size
