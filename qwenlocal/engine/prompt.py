"""A conversation as the tokens the model reads: the GGUF's own chat template, the tokenizer, and
images (through the projector, when one is attached) as runs of negative ids (see vision.py).

LlamaEngine asks it for a prompt's tokens (refused, never truncated, when they do not fit), how far
a prompt matches what later turns will render (where its state is worth keeping), and to evaluate
a prompt with images in it.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import ExitCode, QwenlocalError
from ..images import images_of
from .generate import evaluate_prompt
from .llamacpp import Model
from .template import ChatTemplate, count_tokens, fitting_tokens, tokens_of, turn_boundary


class Prompter:
    def __init__(self, model: Model, name: str) -> None:
        self.model = model
        self.tokenizer = model.tokenizer
        self.template = ChatTemplate(model.meta("tokenizer.chat_template"), name, self.tokenizer.controls)
        self.name = name
        self.vision = None  # a Projector (vision.py) when a projector GGUF is attached

    def tokens(self, messages: list[dict], think: bool, tools: list[dict] | None = None) -> list[int]:
        """Render and tokenize; refuse a prompt that does not fit (never truncate it)."""
        pieces = self.template.pieces(messages, think, tools)
        images = images_of(messages)
        n_ctx, train = self.model.n_ctx, self.model.n_ctx_train
        if not images:
            return fitting_tokens(pieces, self.tokenizer.tokenize, n_ctx, train)
        from . import vision

        tokens = vision.tokens_with_images(pieces, self.tokenizer.tokenize, images, self.projector())
        vision.check_fits(tokens, self.vision, n_ctx, train)
        return tokens

    def projector(self):
        """The attached projector, or why an image cannot be read."""
        if self.vision is None:
            raise QwenlocalError(
                f"{self.name} was loaded without a vision projector, so it cannot see images",
                hint="catalog models fetch theirs (`qwenlocal pull SIZE --vision`); "
                "for a .gguf path give its projector with --mmproj PATH",
                code=ExitCode.USAGE,
            )
        return self.vision

    def count(self, messages: list[dict], think: bool, limit: int) -> int:
        """The prompt's tokens, counted without a context; a huge prompt is counted a slice at a
        time and only up to `limit` (the count returned is then at least `limit`)."""
        return count_tokens(self.template.pieces(messages, think, None), self.tokenizer.tokenize, limit)

    def common_prefix(self, messages: list[dict], think: bool, tools, tokens: list[int]) -> int:
        """How far `tokens` go as the rendering of `messages` (without the assistant's opening)
        does: the state there holds for every prompt that starts with these messages."""
        history = self.template.pieces(messages, think, tools, generation=False)
        images = images_of(messages)
        if not images:
            return turn_boundary(tokens_of(history, self.tokenizer.tokenize), tokens)
        from .vision import IMAGE_PAD, tokens_with_images

        placed = sum(1 for text, control in history if control is not None and text == IMAGE_PAD)
        rendered = tokens_with_images(history, self.tokenizer.tokenize, images[:placed], self.vision)
        return turn_boundary(rendered, tokens)

    def evaluate(self, tokens: list[int], boundary: int, started: float, keep=()):
        """Evaluate a prompt (a generator of its events, returning its PromptRun), its images
        through the projector; counts are in context cells."""
        if not any(t < 0 for t in tokens):
            return (yield from evaluate_prompt(self.model, tokens, boundary, started, keep=keep))
        from . import vision

        decode = vision.decoder(self.model, self.vision)
        prompt = yield from evaluate_prompt(self.model, tokens, boundary, started, decode, keep)
        n = vision.cells(tokens, self.vision)
        return replace(
            prompt,
            n_tokens=n,
            reused=vision.cells(tokens[: prompt.reused], self.vision),
            restored=vision.cells(tokens[: prompt.restored], self.vision),
            image_tokens=n - sum(1 for t in tokens if t >= 0),
        )
