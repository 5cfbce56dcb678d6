"""One generation at a time, in a thread of its own (llama.cpp is synchronous and the model has
one context), with a bounded queue in front of it.

A Job carries the engine's events from the worker thread to the request's coroutine. Cancelling
it (the client went away, a shutdown) is a flag the thread checks at every event, that is every
token (or batch of prompt tokens): the engine's generator is then closed, which leaves its state
cache consistent. When the server stops, each answer in flight ends at once with SHUTTING_DOWN,
without waiting for the thread, so that every client gets a last event before the server goes.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from .openai import ApiError

END = object()  # the last item of every job


def shutting_down() -> ApiError:
    message = "the server is shutting down: this answer was cut short"
    return ApiError(503, message, code="server_shutting_down")


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
        self.stopping = False
        self._jobs: set[Job] = set()

    def submit(self, generate: Callable[[], Iterator[object]]) -> Job:
        if self.stopping:
            raise shutting_down()
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

    def stop(self) -> None:
        """The server is stopping (on the event loop): every job ends now with SHUTTING_DOWN, its
        generation at the thread's next event (a waiting one is never started); new ones get 503."""
        self.stopping = True
        for job in list(self._jobs):
            job.cancel()
            job.put(shutting_down())
            job.put(END)

    def close(self) -> None:
        for job in list(self._jobs):
            job.cancel()
        self.executor.shutdown(wait=True)
