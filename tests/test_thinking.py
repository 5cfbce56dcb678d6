import random

import pytest

from qwenlocal.engine.thinking import ThinkSplitter
from qwenlocal.events import ReasoningDelta, TextDelta

REPLY = "Let me see.\nIt is </thin maybe.\n</think>\n\nThe answer is <b>42</b>.\n"


def run(pieces, thinking=True):
    s = ThinkSplitter(thinking)
    events = [e for p in pieces for e in s.feed(p)] + list(s.flush())
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    answer = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert reasoning == s.reasoning and answer == s.answer
    return reasoning, answer


@pytest.mark.parametrize("seed", range(20))
def test_split_is_the_same_however_the_text_is_cut(seed):
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(REPLY)), rng.randint(1, 30)))
    pieces = [REPLY[a:b] for a, b in zip([0, *cuts], [*cuts, len(REPLY)], strict=True)]
    assert run(pieces) == ("Let me see.\nIt is </thin maybe.", "The answer is <b>42</b>.\n")


def test_without_thinking_everything_is_answer():
    assert run(["\n\nHello", " there"], thinking=False) == ("", "Hello there")


def test_unfinished_reasoning_stays_reasoning():
    assert run(["thinking...", "\n"]) == ("thinking...", "")
