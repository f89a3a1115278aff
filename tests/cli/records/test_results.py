"""`farmhand results`: the table a user types for, against a real server process."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from farmhand import wire
from tests.cli.test_main import farmhand
from tests.cli.test_semantics import finish
from tests.conftest import LiveServer


def test_results_as_csv_jsonl_and_to_a_file(live_server: LiveServer, tmp_path: Path) -> None:
    env = live_server.client_env()
    client = live_server.client()
    client.create_campaign("other")  # ids differ between tables
    c = client.create_campaign("eos")
    specs = [
        wire.RecordSpec(key=f"T{T}", command="true", params={"T": T, "phase": "fcc"})
        for T in (300, 600, 900)
    ]
    client.submit(c.id, specs)
    finish(client, c.id)  # each result is {"ok": 1}
    r = farmhand("results", "--campaign", "eos", env=env)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert r.stdout.splitlines()[0] == "key,state,T,phase,ok,attempts,runtime_s,error"
    assert [(row["key"], row["T"], row["ok"], row["state"]) for row in rows] == [
        ("T300", "300", "1", "done"), ("T600", "600", "1", "done"), ("T900", "900", "1", "done"),
    ]  # fmt: skip
    r = farmhand(
        "results", "--campaign", "eos:1", "--format", "jsonl", "--where", "T>=600", env=env
    )
    assert [json.loads(line)["key"] for line in r.stdout.splitlines()] == ["T600", "T900"]
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "eos.csv"
    r = farmhand("results", "--campaign", "eos", "--state", "done", "-o", str(out), env=env)
    assert r.returncode == 0 and r.stdout == "" and len(out.read_text().splitlines()) == 4
    assert [p.name for p in out.parent.iterdir()] == ["eos.csv"]  # no partial file left


def test_results_refuse_a_typo_and_an_unknown_campaign(live_server: LiveServer) -> None:
    env = live_server.client_env()
    client = live_server.client()
    c = client.create_campaign("eos")
    client.submit(c.id, [wire.RecordSpec(key="k", command="true", params={"T": 1})])
    r = farmhand("results", "--campaign", "eos", "--where", "t>=1", env=env)
    assert r.returncode == 1 and "no record of campaign" in r.stderr and "params: T" in r.stderr
    r = farmhand("results", "--campaign", "eos", "--where", "T>", env=env)
    assert r.returncode == 1 and "has no value" in r.stderr
    r = farmhand("results", "--campaign", "nope", env=env)
    assert r.returncode == 1 and "nope" in r.stderr
    r = farmhand("results", "--campaign", "eos", "--state", "finished", env=env)
    assert r.returncode == 1 and "no record state 'finished'" in r.stderr
