"""Only the chat template's own markup becomes control tokens.

Text from a person, a file, a tool or stdin may contain `<|im_end|>\\n<|im_start|>system`. Tokenized
with special-token parsing, as a whole rendered prompt usually is, it would close the user's turn
and forge a system or assistant turn. So, before the template runs, every control-token text inside
the conversation's strings is swapped for a placeholder that no input can contain (a random nonce
between private-use characters); after rendering, the prompt is cut at the control tokens that
remain, which can only be the template's markup, and each piece between them is tokenized as plain
text with the original characters put back. Cutting at control tokens is what llama.cpp's own
tokenizer does first, so a prompt without such text tokenizes exactly as before.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator


class Shield:
    """Hides control-token texts in untrusted strings, and finds the markup in a rendered prompt."""

    def __init__(self, controls: dict[str, int]) -> None:
        self.controls = controls  # text -> id of every control token of the vocabulary
        nonce = secrets.token_hex(8)
        self._marks = {text: f"\ue000{nonce}.{i}\ue001" for i, text in enumerate(controls)}
        self._texts = {mark: text for text, mark in self._marks.items()}
        self._control = _alternation(controls)
        self._mark = _alternation(self._texts)

    def hide(self, value):
        """`value` (strings, lists and dicts of them) with every control-token text replaced."""
        if self._control is None:
            return value
        if isinstance(value, str):
            return self._control.sub(lambda m: self._marks[m[0]], value)
        if isinstance(value, dict):
            return {self.hide(k): self.hide(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.hide(v) for v in value]
        return value

    def pieces(self, rendered: str) -> Iterator[tuple[str, int | None]]:
        """The prompt as (text, None) runs of plain text and (text, id) control tokens."""
        pos = 0
        for match in self._control.finditer(rendered) if self._control else ():
            if match.start() > pos:
                yield self._reveal(rendered[pos : match.start()]), None
            yield match[0], self.controls[match[0]]
            pos = match.end()
        if pos < len(rendered):
            yield self._reveal(rendered[pos:]), None

    def _reveal(self, text: str) -> str:
        return self._mark.sub(lambda m: self._texts[m[0]], text) if self._mark else text


def _alternation(texts) -> re.Pattern | None:
    # longest first, so a control token that begins another never wins over it
    ordered = sorted(texts, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, ordered))) if ordered else None
