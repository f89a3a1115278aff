"""The Celery + Redis peer of `bench.noop`: N tasks, each running `sh -c true` in a subprocess
like an agent's command, through one Celery worker with a threads pool of 8 and `acks_late`,
on the machine's Redis (FARMHAND_BENCH_REDIS, default redis://127.0.0.1:6379/15).

The tasks are queued first; the clock runs from the worker's start until the last task has
counted itself done in Redis (the worker's start-up is inside, as an agent's registration is
inside its figure). Needs the `bench` extra (`pip install 'farmhand[bench]'`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from typing import Any

BROKER = os.environ.get("FARMHAND_BENCH_REDIS", "redis://127.0.0.1:6379/15")
THREADS = 8


def make_app() -> tuple[Any, Any, Any]:
    """The Celery app and its one task (built on demand: celery is a bench extra)."""
    from celery import Celery
    from redis import Redis

    app = Celery("farmhand_bench", broker=BROKER)
    app.conf.update(task_acks_late=True, worker_hijack_root_logger=False)
    counter = Redis.from_url(BROKER)

    @app.task(name="farmhand_bench.run")
    def run(command: str, done_key: str) -> None:
        subprocess.run(["sh", "-c", command], check=True)
        counter.incr(done_key)

    return app, run, counter


def why_missing() -> str | None:
    """Why the Celery row cannot be measured here (None when it can)."""
    try:
        import celery  # noqa: F401
        from redis import Redis
    except ImportError as exc:
        return f"celery is not installed ({exc.name}): pip install 'farmhand[bench]'"
    try:
        Redis.from_url(BROKER, socket_connect_timeout=2).ping()
    except Exception as exc:
        return f"no Redis at {BROKER}: {type(exc).__name__}: {exc}"
    return None


def celery_rate(n: int) -> float:
    """Tasks per second through one Celery worker (threads pool of 8, acks_late)."""
    _, run, counter = make_app()
    queue = f"farmhand-bench-{uuid.uuid4().hex[:8]}"
    done_key = f"{queue}:done"
    for _ in range(n):
        run.apply_async(("true", done_key), queue=queue)
    argv = [
        sys.executable, "-m", "celery", "-A", "bench.celery_peer:app", "worker",
        "--pool", "threads", "--concurrency", str(THREADS), "-Q", queue,
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "warning",
    ]  # fmt: skip
    began = time.perf_counter()
    worker = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while int(counter.get(done_key) or 0) < n:
            if worker.poll() is not None:
                raise RuntimeError(f"the Celery worker exited with status {worker.returncode}")
            time.sleep(0.02)
        elapsed = time.perf_counter() - began
    finally:
        worker.terminate()
        worker.wait(30)
        counter.delete(done_key, queue)
    return n / elapsed


def __getattr__(name: str) -> Any:  # `celery -A bench.celery_peer:app` asks for `app`
    if name == "app":
        return make_app()[0]
    raise AttributeError(name)
