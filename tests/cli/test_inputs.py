"""`farmhand submit` with input files: TOML `inputs`, `--input FILE`; each distinct file is
hashed once and uploaded once, against the real app (in-process), every request counted."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from farmhand.cli import main as cli
from farmhand.cli.campaigns import submit as cli_submit
from farmhand.cli.files import campaigns as campaign_file
from farmhand.cli.files.campaigns import CampaignFileError
from farmhand.cli.files.tasklists import key_of
from farmhand.client import FarmhandClient
from tests.conftest import ADMIN


class Counting(httpx.BaseTransport):
    """The app's own transport, with every request noted (method, path, JSON body)."""

    def __init__(self, inner: httpx.BaseTransport):
        self.inner = inner
        self.calls: list[tuple[str, str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = None
        if request.headers.get("content-type") == "application/json":
            body = json.loads(request.read())
        self.calls.append((request.method, request.url.path, body))
        return self.inner.handle_request(request)

    def count(self, method: str, prefix: str = "/api/v1/snapshots/") -> int:
        return sum(1 for m, path, _ in self.calls if m == method and path.startswith(prefix))

    def submitted(self) -> dict[str, dict[str, str]]:
        """Each submitted record's inputs, by key."""
        return {
            spec["key"]: spec["inputs"]
            for m, path, body in self.calls
            if m == "POST" and path == "/api/v1/records"
            for spec in body["records"]
        }


@pytest.fixture
def counted(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, Counting]]:
    """`counted(*argv)` runs `farmhand …` against the app, returning (status, requests)."""

    def run(*argv: str) -> tuple[int, Counting]:
        transport = Counting(api._transport)
        client = FarmhandClient("http://testserver", ADMIN, transport=transport)
        monkeypatch.setattr(cli_submit, "connect", lambda args: client)
        return cli.main(list(argv)), transport

    return run


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_shared_input_is_uploaded_once(
    tmp_path: Path, api: TestClient, counted: Callable[..., tuple[int, Counting]]
) -> None:
    (tmp_path / "pot").mkdir()
    (tmp_path / "relax.py").write_bytes(b"print('relax')\n")
    (tmp_path / "pot" / "Al.eam").write_bytes(b"Al potential\n")
    (tmp_path / "a-only.txt").write_bytes(b"just a\n")
    (tmp_path / "copy.py").write_bytes(b"print('relax')\n")  # same bytes, another name
    toml = tmp_path / "relax.toml"
    toml.write_text(
        '[campaign]\nname = "relax"\ninputs = ["pot/Al.eam"]\n'
        '[[records]]\nkey = "a"\ncommand = "python relax.py"\n'
        'inputs = ["relax.py", "./a-only.txt"]\n'
        '[[records]]\nkey = "b"\ncommand = "python relax.py"\ninputs = ["relax.py"]\n'
        '[[records]]\nkey = "c"\ncommand = "python copy.py"\ninputs = ["copy.py"]\n'
    )
    status, requests = counted("submit", str(toml))
    assert status == 0
    script, pot, only = sha(b"print('relax')\n"), sha(b"Al potential\n"), sha(b"just a\n")
    assert requests.count("PUT") == 3  # relax.py (= copy.py), pot/Al.eam, a-only.txt
    assert requests.submitted() == {
        "a": {"a-only.txt": only, "pot/Al.eam": pot, "relax.py": script},
        "b": {"pot/Al.eam": pot, "relax.py": script},
        "c": {"copy.py": script, "pot/Al.eam": pot},
    }
    stored = api.get("/api/v1/records", params={"limit": 10}).json()["items"]
    assert {r["key"]: r["inputs"] for r in stored} == requests.submitted()
    listed = api.get("/api/v1/snapshots").json()["items"]
    assert sorted(s["sha256"] for s in listed) == sorted([script, pot, only])
    assert {s["sha256"]: s["references"] for s in listed} == {script: 3, pot: 3, only: 1}
    status, again = counted("submit", str(toml))  # the server has them all now
    assert status == 0 and again.count("PUT") == 0 and again.count("HEAD") == 3


def test_tasklist_inputs_are_placed_by_file_name(
    tmp_path: Path, counted: Callable[..., tuple[int, Counting]]
) -> None:
    (tmp_path / "inputs").mkdir()
    script = tmp_path / "inputs" / "relax.py"
    script.write_bytes(b"x")
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("python relax.py 1\npython relax.py 2\n")
    status, requests = counted("submit", str(tasks), "--campaign", "t", "--input", str(script))
    assert status == 0 and requests.count("PUT") == 1
    keys = [key_of(f"python relax.py {n}", Counter()) for n in (1, 2)]
    assert requests.submitted() == {key: {"relax.py": sha(b"x")} for key in keys}
    # Checked in a dry run before the upload, then submitted.
    posted = [
        body.get("dry_run", False)
        for m, path, body in requests.calls
        if (m, path) == ("POST", "/api/v1/records")
    ]
    assert posted == [True, False]


def test_two_inputs_with_one_name_are_refused_before_anything_is_sent(
    tmp_path: Path, counted: Callable[..., tuple[int, Counting]], capsys: pytest.CaptureFixture
) -> None:
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "in.dat").write_text(sub)
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("true\n")
    args = ["--input", str(tmp_path / "x" / "in.dat"), "--input", str(tmp_path / "y" / "in.dat")]
    status, requests = counted("submit", str(tasks), "--campaign", "t", *args)
    assert status == 1 and requests.calls == []
    assert "would both be 'in.dat' in the run directory" in capsys.readouterr().err
    status, requests = counted("submit", str(tasks), "--campaign", "t", "--input", str(tmp_path))
    assert status == 1 and requests.calls == []
    assert "is a directory; give a file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("/etc/passwd", "is absolute; give it relative to the campaign file"),
        ("../secret.txt", "climbs out with '..'"),
        ("pot/../../x", "climbs out with '..'"),
        ("missing.txt", "input 'missing.txt' does not exist"),
        ("pot", "input 'pot' is a directory; list its files"),
        ("", "an input must be a file path"),
    ],
)
def test_bad_input_paths_name_the_record_and_the_problem(
    tmp_path: Path, given: str, problem: str
) -> None:
    (tmp_path / "pot").mkdir()
    toml = tmp_path / "c.toml"
    toml.write_text(f'[[records]]\nkey = "k"\ncommand = "true"\ninputs = ["{given}"]\n')
    with pytest.raises(CampaignFileError) as caught:
        campaign_file.read(toml)
    assert "records[0] ('k')" in str(caught.value) and problem in str(caught.value)


def test_input_paths_are_normalised_and_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "sub" / "pot").mkdir(parents=True)
    (tmp_path / "sub" / "pot" / "Al.eam").write_text("p")
    toml = tmp_path / "sub" / "c.toml"
    toml.write_text('[[records]]\nkey = "k"\ncommand = "true"\ninputs = ["./pot//Al.eam"]\n')
    parsed = campaign_file.read(toml)
    assert parsed.inputs == {"k": {"pot/Al.eam": tmp_path / "sub" / "pot" / "Al.eam"}}
    assert parsed.records[0].inputs == {}  # filled in by `farmhand submit` once hashed


def test_inputs_must_be_a_list(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[[records]]\nkey = "k"\ncommand = "true"\ninputs = "a.txt"\n')
    with pytest.raises(CampaignFileError, match="inputs must be a list of file paths"):
        campaign_file.read(toml)
