"""One generation at a time, in a thread of its own (llama.cpp is synchronous and the model has
one context), with a bounded queue in front of it.

A Job carries the engine's events from the worker thread to the request's coroutine. Cancelling
it (the client went away, a shutdown) is a flag the thread checks at every event, that is every
token: the engine's generator is then closed, which leaves its state cache consistent.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from .openai import ApiError

END = object()  # the last item of every job


class Job:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue = asyncio.Queue()
        self._waiting: asyncio.Future | None = None
        self.cancelled = threading.Event()

    def put(self, item: object) -> None:
        """From the worker thread."""
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def cancel(self) -> None:
        self.cancelled.set()

    async def next(self, disconnected: Callable | None = None, every: float = 0.25) -> object:
        """The next event, END, or the exception the generation raised. `disconnected()` (an
        awaitable check) is asked while waiting; when it says so, the job is cancelled and END
        comes back."""
        while True:
            if self._waiting is None:
                self._waiting = asyncio.ensure_future(self._queue.get())
            done, _ = await asyncio.wait({self._waiting}, timeout=every if disconnected else None)
            if done:
                item, self._waiting = self._waiting.result(), None
                return item
            if await disconnected():
                self.cancel()
                return END

    def discard(self) -> None:
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None


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
