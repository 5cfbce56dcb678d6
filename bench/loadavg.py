"""The machine's load beside every row: the 1-minute load average while the row was measured.

These machines are shared. A row is not held back for a quieter machine: it says what load it
was measured under, and one measured while the load average exceeded the core count says so. The
benchmark's own threads count too (about `--threads` of it while llama.cpp computes), so a quiet
2-core machine running a 2-thread bench reads about 2.
"""

from __future__ import annotations

import os
import threading

CORES = os.cpu_count() or 1
HEADER = "load (1 min)"


def now() -> float:
    return os.getloadavg()[0]


class Watch:
    """Reads the 1-minute load average every `every` seconds while open (and at both ends): the
    row's load is the mean of the readings, `samples` keeps them all for results.json."""

    def __init__(self, every: float = 2.0) -> None:
        self.every, self.samples = every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(now())

    def start(self) -> Watch:
        self.samples.append(now())
        self._thread.start()
        return self

    def stop(self) -> Watch:
        self._stop.set()
        self._thread.join()
        self.samples.append(now())
        return self

    def __enter__(self) -> Watch:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else 0.0


def watch() -> Watch:
    return Watch()


def busy(load: float) -> bool:
    return load > CORES


def cell(load: float | None) -> str:
    """The table cell: the load, marked where it exceeded the core count."""
    if not load:
        return ""
    return f"{load:.1f} ⚠ over {CORES} cores" if busy(load) else f"{load:.1f}"


def note(loads: list[float]) -> str:
    """A sentence for a section's text: how many of its rows were measured on a busy machine."""
    over = sum(busy(x) for x in loads if x)
    if not over:
        return f"Every row was measured with the 1-minute load average at or under the core count ({CORES})."
    return (
        f"{over} of {len(loads)} rows were measured while the 1-minute load average exceeded the core count "
        f"({CORES}): other work shared the machine, read them as upper bounds on time."
    )
