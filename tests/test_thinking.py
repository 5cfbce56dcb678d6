import random

import pytest

from qwenlocal.engine.thinking import ThinkSplitter
from qwenlocal.events import ReasoningDelta, TextDelta

REPLY = "Let me see.\nIt is </thin maybe.\n</think>\n\nThe answer is <b>42</b>.\n"


def run(pieces, thinking=True, tools=False):
    s = ThinkSplitter(thinking, tools)
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


CALL = "<tool_call>\n<function=run_shell>\n<parameter=command>\npwd\n</parameter>\n</function>\n</tool_call>"
CALL_REPLY = "Need to look at the directory.\n" + CALL


@pytest.mark.parametrize("seed", range(20))
def test_with_tools_a_call_ends_the_reasoning_however_the_text_is_cut(seed):
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(CALL_REPLY)), rng.randint(1, 30)))
    pieces = [CALL_REPLY[a:b] for a, b in zip([0, *cuts], [*cuts, len(CALL_REPLY)], strict=True)]
    assert run(pieces, tools=True) == ("Need to look at the directory.", CALL)


def test_without_tools_a_call_stays_in_the_reasoning():
    assert run([CALL_REPLY]) == (CALL_REPLY, "")


def test_with_tools_the_first_of_think_end_and_call_ends_the_reasoning():
    reply = "Plan.\n</think>\n\nShow <tool_call> later\n" + CALL
    assert run([reply], tools=True) == ("Plan.", reply.split("\n\n", 1)[1])
    assert run(["Plan.\n" + CALL + "\n</think>"], tools=True) == ("Plan.", CALL + "\n</think>")
