"""One generation at a time, in a thread of its own (llama.cpp is synchronous and the model has
one context), with a bounded queue in front of it.

A Job carries the engine's events from the worker thread to the request's coroutine. Cancelling
it (the client went away, a shutdown) is a flag the thread checks at every event, that is every
token: the engine's generator is then closed, which leaves its state cache consistent.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from .openai import ApiError

END = object()  # the last item of every job


class Job:
    """Events from the worker thread to the request's coroutine, in batches: the event loop is
    woken once for all the events that came while it was busy, not once per token (with llama.cpp's
    threads on every core, a wake-up per token starved it and slowed generation several times)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque = deque()
        self._lock = threading.Lock()
        self._ready = asyncio.Event()
        self.cancelled = threading.Event()

    def put(self, item: object) -> None:
        """From the worker thread."""
        with self._lock:
            self._items.append(item)
            wake = len(self._items) == 1
        if wake:
            self._loop.call_soon_threadsafe(self._ready.set)

    def cancel(self) -> None:
        self.cancelled.set()

    def _take(self) -> list:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._ready.clear()
        return items

    async def batch(self, disconnected: Callable | None = None, every: float = 0.25) -> list:
        """The events that came (at least one: an event, END, or the exception the generation
        raised). `disconnected()` (an awaitable check) is asked while waiting; when it says so, the
        job is cancelled and [END] comes back."""
        while True:
            items = self._take()
            if items:
                return items
            try:
                await asyncio.wait_for(self._ready.wait(), every if disconnected else None)
            except TimeoutError:
                if await disconnected():
                    self.cancel()
                    return [END]


class Worker:
    """Runs jobs one after another; `submit` refuses (429) beyond `max_queue` waiting ones."""

    def __init__(self, max_queue: int = 8) -> None:
        self.max_queue = max_queue
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="qwenlocal-generate")
        self.active = 0  # submitted and not finished; only touched on the event loop
        self._jobs: set[Job] = set()

    def submit(self, generate: Callable[[], Iterator[object]]) -> Job:
        if self.active > self.max_queue:
            raise ApiError(
                429,
                f"the server is busy: one answer is being generated and {self.max_queue} wait; try again",
                code="server_busy",
            )
        loop = asyncio.get_running_loop()
        job = Job(loop)
        self.active += 1
        self._jobs.add(job)
        self.executor.submit(self._run, job, generate, loop)
        return job

    def _run(self, job: Job, generate: Callable[[], Iterator[object]], loop) -> None:
        try:
            if not job.cancelled.is_set():
                events = generate()
                try:
                    for event in events:
                        job.put(event)
                        if job.cancelled.is_set():
                            break
                finally:
                    events.close()  # a generation stopped early: the engine marks its state
        except Exception as error:  # a QwenlocalError (the prompt does not fit...) or a bug
            job.put(error)
        finally:
            job.put(END)
            loop.call_soon_threadsafe(self._finished, job)

    def _finished(self, job: Job) -> None:
        self.active -= 1
        self._jobs.discard(job)

    def cancel_all(self) -> None:
        for job in list(self._jobs):
            job.cancel()

    def close(self) -> None:
        self.cancel_all()
        self.executor.shutdown(wait=True)
