"""The threads that run attempts, reused, so that a short command does not cost a thread.

Every attempt the agent takes runs at once: its work goes to an idle thread of the crew, or
to a new thread when none is idle (never into a queue behind another attempt). A thread that
found nothing to do for `IDLE_EXIT` seconds ends, so an idle agent holds none. A `Task` is
what a `threading.Thread` was to the attempt's callers: `start`, `join`, `is_alive`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

__all__ = ["IDLE_EXIT", "Crew", "Task"]

log = logging.getLogger("farmhand.agent")

#: Seconds a crew thread waits for work before it ends.
IDLE_EXIT = 30.0


class Task:
    """One piece of work for the crew; `start()` once, then `join`/`is_alive` as a thread."""

    def __init__(self, crew: Crew, target: Callable[[], None], name: str):
        self.name = name
        self._crew = crew
        self._target = target
        self._started = False
        self._done = threading.Event()

    def start(self) -> None:
        """Hand the work to the crew; it starts at once."""
        if self._started:
            raise RuntimeError(f"task {self.name} was started already")
        self._started = True
        self._crew.submit(self)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the work is over, or `timeout` seconds."""
        if not self._started:
            raise RuntimeError(f"task {self.name} was never started")
        self._done.wait(timeout)

    def is_alive(self) -> bool:
        """Started and not over yet."""
        return self._started and not self._done.is_set()

    def run(self) -> None:
        """Do the work (on a crew thread); the task is over even if it raised."""
        try:
            self._target()
        except Exception:
            log.exception("%s failed", self.name)
        finally:
            self._done.set()


class Crew:
    """Daemon threads named `name-N` that take tasks as they come (see the module)."""

    def __init__(self, name: str = "farmhand-run", idle_exit: float = IDLE_EXIT):
        self.name = name
        self.idle_exit = idle_exit
        self._cond = threading.Condition()
        self._tasks: deque[Task] = deque()
        self._idle = 0
        self._threads = 0
        self._made = 0

    def task(self, target: Callable[[], None], name: str) -> Task:
        """A task that runs `target()` once started."""
        return Task(self, target, name)

    def submit(self, task: Task) -> None:
        """Run `task` on an idle thread, or on a new one when every thread is busy."""
        with self._cond:
            self._tasks.append(task)
            if self._idle >= len(self._tasks):
                self._cond.notify()
                return
            self._threads += 1
            self._made += 1
            name = f"{self.name}-{self._made}"
        threading.Thread(target=self._work, daemon=True, name=name).start()

    @property
    def idle(self) -> int:
        """Threads waiting for a task now."""
        with self._cond:
            return self._idle

    @property
    def threads(self) -> int:
        """Threads the crew has now, busy or idle."""
        with self._cond:
            return self._threads

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._tasks:
                    self._idle += 1
                    woken = self._cond.wait(self.idle_exit)
                    self._idle -= 1
                    if not woken and not self._tasks:
                        self._threads -= 1
                        return
                task = self._tasks.popleft()
            task.run()
