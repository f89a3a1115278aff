"""What an agent detects it has, and what records ask for."""

from __future__ import annotations

from pathlib import Path

import pytest

from farmhand.runtime.resources import node as resources
from farmhand.runtime.resources.node import Need, detect, parse_gpus, parse_memory, requested


@pytest.fixture(autouse=True)
def no_host_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the cgroup and NVIDIA sources at an empty directory: the host's must not leak."""
    monkeypatch.setattr(resources, "CGROUP", tmp_path / "cgroup")
    monkeypatch.setattr(resources, "NVIDIA_PROC", tmp_path / "nvidia")
    return tmp_path


@pytest.mark.parametrize(
    ("value", "mib"),
    [(512, 512), (0, 0), (1.5, 2), ("4G", 4096), ("4 GiB", 4096), ("4gb", 4096),
     ("512M", 512), ("1.5G", 1536), ("100", 100), ("1T", 1024 * 1024), ("1K", 1)],
)  # fmt: skip
def test_parse_memory(value: object, mib: int) -> None:
    assert parse_memory(value) == mib


@pytest.mark.parametrize("value", ["lots", "4X", "-1G", -5, True, None, "", [4]])
def test_parse_memory_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="memory"):
        parse_memory(value)


def test_parse_gpus() -> None:
    assert parse_gpus("2") == ("0", "1")
    assert parse_gpus("0") == ()
    assert parse_gpus("1,3") == ("1", "3")
    assert parse_gpus("3,") == ("3",)
    assert parse_gpus("GPU-a1b2, GPU-c3d4") == ("GPU-a1b2", "GPU-c3d4")
    for bad in ("two", "", "1,1", "-1"):
        with pytest.raises(ValueError, match="--gpus"):
            parse_gpus(bad)


def test_requested_defaults_and_values() -> None:
    assert requested({}) == Need(cores=None, gpus=0, memory_mb=0)
    assert requested({"cores": 4, "gpus": 2, "memory": "8G"}) == Need(4.0, 2, 8192)
    assert requested({"cores": 0.5}).cores == 0.5


@pytest.mark.parametrize(
    ("run_args", "message"),
    [
        ({"cores": 0}, "run_args.cores must be a positive number, not 0"),
        ({"cores": "4"}, "run_args.cores must be a positive number, not '4'"),
        ({"cores": True}, "run_args.cores must be a positive number"),
        ({"gpus": 1.5}, "run_args.gpus must be a whole number of GPUs, not 1.5"),
        ({"gpus": -1}, "run_args.gpus must be a whole number"),
        ({"memory": "huge"}, "run_args.memory must be MiB or a size like '4G', not 'huge'"),
    ],
)
def test_requested_names_the_bad_key(run_args: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        requested(run_args)


def test_slurm_variables() -> None:
    env = {
        "SLURM_CPUS_PER_TASK": "16",
        "SLURM_CPUS_ON_NODE": "64",
        "SLURM_GPUS_ON_NODE": "2",
        "SLURM_MEM_PER_NODE": "64000",
    }
    found = detect(env)
    assert (found.cores, found.gpus, found.memory_mb) == (16.0, ("0", "1"), 64000)
    assert found.sources == {
        "cores": "SLURM_CPUS_PER_TASK",
        "gpus": "SLURM_GPUS_ON_NODE",
        "memory": "SLURM_MEM_PER_NODE",
    }
    per_cpu = detect({"SLURM_CPUS_ON_NODE": "8(x2)", "SLURM_MEM_PER_CPU": "2000"})
    assert (per_cpu.cores, per_cpu.memory_mb) == (8.0, 16000)


@pytest.mark.parametrize(
    ("visible", "ids"),
    [("0,1", ("0", "1")), ("GPU-a,GPU-b", ("GPU-a", "GPU-b")), ("", ()), ("-1", ()),
     ("2,-1,3", ("2",)), ("NoDevFiles", ())],
)  # fmt: skip
def test_cuda_visible_devices_wins(visible: str, ids: tuple[str, ...]) -> None:
    found = detect({"CUDA_VISIBLE_DEVICES": visible, "SLURM_GPUS_ON_NODE": "4"})
    assert (found.gpus, found.sources["gpus"]) == (ids, "CUDA_VISIBLE_DEVICES")


def test_flags_win_over_everything() -> None:
    env = {"SLURM_CPUS_PER_TASK": "16", "CUDA_VISIBLE_DEVICES": "0,1", "SLURM_MEM_PER_NODE": "9"}
    found = detect(env, cores=2.5, gpus=("7",), memory_mb=100)
    assert (found.cores, found.gpus, found.memory_mb) == (2.5, ("7",), 100)
    assert set(found.sources.values()) == {"--cores", "--gpus", "--memory"}
    with pytest.raises(ValueError, match="--cores must be positive"):
        detect(env, cores=0)


def test_the_os_when_no_batch_system_says(no_host_sources: Path) -> None:
    found = detect({})
    assert found.cores >= 1 and found.sources["cores"] in ("CPU affinity", "os.cpu_count()")
    assert (found.gpus, found.sources["gpus"]) == ((), "none found")
    assert found.memory_mb is not None and found.memory_mb > 0
    assert found.sources["memory"] == "/proc/meminfo"


def test_cgroup_limits_and_nvidia_proc(no_host_sources: Path) -> None:
    cgroup = no_host_sources / "cgroup"
    cgroup.mkdir()
    (cgroup / "cpu.max").write_text("50000 100000\n")
    (cgroup / "memory.max").write_text(f"{3 * 2**20}\n")
    nvidia = no_host_sources / "nvidia"
    for bus in ("0000:3b:00.0", "0000:5e:00.0", "0000:86:00.0"):
        (nvidia / bus).mkdir(parents=True)
    found = detect({})
    assert (found.cores, found.sources["cores"]) == (0.5, "cgroup cpu.max")
    assert (found.memory_mb, found.sources["memory"]) == (3, "cgroup memory limit")
    assert found.gpus == ("0", "1", "2")
    (cgroup / "cpu.max").write_text("max 100000\n")
    (cgroup / "memory.max").write_text("max\n")
    assert detect({}).sources["cores"] != "cgroup cpu.max"
    assert detect({}).sources["memory"] == "/proc/meminfo"


def test_describe_and_wire() -> None:
    found = detect({}, cores=4, gpus=("0", "2"), memory_mb=2048)
    assert found.describe() == (
        "4 cores (--cores), 2 GPUs [0,2] (--gpus), 2048 MiB memory (--memory)"
    )
    wire = found.to_wire()
    assert (wire.cores, wire.gpus, wire.memory_mb) == (4.0, 2, 2048)
