"""The agent's snapshot cache against a real server: one download per snapshot, and with a
size limit, eviction of the least recently used files the cache alone holds."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from farmhand.client.transfer import sha256_file
from farmhand.runtime.config import AgentConfig
from farmhand.runtime.files.cache import SnapshotCache, place_inputs
from tests.conftest import LiveServer

SIZE = 1000


@pytest.fixture
def snapshots(live_server: LiveServer, tmp_path: Path) -> dict[str, str]:
    """Three uploaded snapshots of SIZE bytes each, by name."""
    client = live_server.client()
    names = {}
    for name in "abc":
        path = tmp_path / "uploads" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(SIZE))
        names[name] = client.upload_snapshot(path)
    return names


def cached(cache: SnapshotCache, names: dict[str, str]) -> set[str]:
    """Which of `names` are in the cache directory now."""
    return {name for name, sha in names.items() if (cache.directory / sha).exists()}


def test_without_a_limit_everything_stays(
    live_server: LiveServer, tmp_path: Path, snapshots: dict[str, str]
) -> None:
    cache = SnapshotCache(tmp_path / "cache", live_server.client())
    for name in "abcab":
        assert sha256_file(cache.fetch(snapshots[name])) == snapshots[name]
    assert cache.downloads == 3 and cache.evicted == 0
    assert cached(cache, snapshots) == {"a", "b", "c"}


def test_the_least_recently_used_go_first(
    live_server: LiveServer, tmp_path: Path, snapshots: dict[str, str]
) -> None:
    cache = SnapshotCache(tmp_path / "cache", live_server.client(), limit=2 * SIZE + SIZE // 2)
    for name in "abc":
        cache.fetch(snapshots[name])
    assert cached(cache, snapshots) == {"b", "c"}  # 3,000 bytes > 2,500: a, the oldest, went
    assert cache.evicted == 1
    cache.fetch(snapshots["b"])  # cached: b is now newer than c
    cache.fetch(snapshots["a"])  # downloaded again; c is the least recently used
    assert cached(cache, snapshots) == {"a", "b"}
    assert (cache.downloads, cache.evicted) == (4, 2)


def test_files_linked_into_a_run_or_in_use_are_kept(
    live_server: LiveServer, tmp_path: Path, snapshots: dict[str, str]
) -> None:
    cache = SnapshotCache(tmp_path / "cache", live_server.client(), limit=0)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert place_inputs(run_dir, {"in/a.dat": snapshots["a"]}, cache) == ["in/a.dat"]
    cache.fetch(snapshots["b"])
    with cache.held(snapshots["b"]) as held:  # cached already: leaving evicts nothing
        cache.fetch(snapshots["c"])  # evicts what it can: not a (linked), not b (held)
        assert held.exists()
    assert cached(cache, snapshots) == {"a", "b", "c"}
    assert (run_dir / "in" / "a.dat").read_bytes() == cache.path(snapshots["a"]).read_bytes()
    shutil.rmtree(run_dir)  # the run is over: a is the cache's alone now
    cache.fetch(snapshots["b"])  # not a download: nothing is evicted
    assert cache.evicted == 0
    cache.path(snapshots["c"]).unlink()
    cache.fetch(snapshots["c"])  # a download: a and b go, c (the newest) stays
    assert cached(cache, snapshots) == {"c"}
    assert cache.evicted == 2


def test_files_an_earlier_agent_left_go_before_this_agents(
    live_server: LiveServer, tmp_path: Path, snapshots: dict[str, str]
) -> None:
    first = SnapshotCache(tmp_path / "cache", live_server.client())
    first.fetch(snapshots["a"])
    os.utime(first.path(snapshots["a"]), ns=(0, 0))  # left long ago
    cache = SnapshotCache(tmp_path / "cache", live_server.client(), limit=2 * SIZE)
    cache.fetch(snapshots["b"])
    assert cached(cache, snapshots) == {"a", "b"}  # 2,000 bytes: within the limit
    cache.fetch(snapshots["c"])
    assert cached(cache, snapshots) == {"b", "c"}
    stray = cache.directory / "not-a-snapshot"
    stray.write_bytes(b"x" * 10 * SIZE)  # not the cache's: neither counted nor removed
    cache.fetch(snapshots["a"])
    assert cached(cache, snapshots) == {"c", "a"} and stray.exists()


def test_a_negative_cache_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="cache_limit must not be negative, not -1"):
        AgentConfig(server="http://x", cache_limit=-1).check()
