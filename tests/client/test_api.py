"""The typed client against `httpx.MockTransport`: what each new call sends and returns."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from farmhand import wire
from farmhand.client import Conflict, FarmhandClient, NotFound
from farmhand.client.transfer import HEAD_ABOVE, sha256_file

NOW = "2024-01-01T00:00:00Z"
CAMPAIGN = {"id": 7, "name": "relax", "version": 2, "created_at": NOW}
ACK = {"run_id": 5, "run_state": "orphaned", "record_id": 9, "record_state": "orphaned"}


class Recorder:
    """A mock server: records each request and answers with `respond(request)`."""

    def __init__(self, respond: Callable[[httpx.Request], Any], status: int = 200):
        self.requests: list[httpx.Request] = []
        self.respond = respond
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.respond(request))

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests]


def client_for(recorder: Recorder) -> FarmhandClient:
    return FarmhandClient("http://farmhand.test", "t", transport=httpx.MockTransport(recorder))


def test_create_campaign_sends_based_on() -> None:
    recorder = Recorder(lambda r: {**CAMPAIGN, "based_on": "relax:1"}, status=201)
    campaign = client_for(recorder).create_campaign(
        "relax", software="lammps", defaults={"timeout": 60}, based_on="relax"
    )
    assert campaign.based_on == "relax:1"
    (body,) = recorder.bodies()
    assert body == {
        "name": "relax",
        "software": "lammps",
        "defaults": {"timeout": 60},
        "based_on": "relax",
    }


def test_submit_sends_the_force_flags_and_adds_up_every_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wire, "MAX_RECORDS_PER_REQUEST", 2)
    answers = iter(
        [
            {"created": 1, "skipped": 1, "replaced": 0, "skipped_keys": ["b"]},
            {"created": 0, "skipped": 0, "replaced": 1},
        ]
    )
    recorder = Recorder(lambda r: next(answers), status=201)
    specs = [wire.RecordSpec(key=k, command="true") for k in "abc"]
    answer = client_for(recorder).submit(7, specs, force=True, force_ignores_success=True)
    assert (answer.created, answer.skipped, answer.replaced) == (1, 1, 1)
    assert answer.skipped_keys == ["b"]
    bodies = recorder.bodies()
    assert [[r["key"] for r in b["records"]] for b in bodies] == [["a", "b"], ["c"]]
    assert all(b["force"] and b["force_ignores_success"] for b in bodies)


def test_a_chunked_submission_sends_parents_before_their_children(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wire, "MAX_RECORDS_PER_REQUEST", 2)
    recorder = Recorder(lambda r: {"created": len(json.loads(r.content)["records"]), "skipped": 0})
    specs = [
        wire.RecordSpec(key="child", command="true", parents=["mid", 17]),
        wire.RecordSpec(key="other", command="true"),
        wire.RecordSpec(key="mid", command="true", parents=["root"]),
        wire.RecordSpec(key="root", command="true"),
    ]
    assert client_for(recorder).submit(7, specs).created == 4
    sent = [r["key"] for body in recorder.bodies() for r in body["records"]]
    assert sent == ["root", "mid", "child", "other"]


def test_retry_sends_every_flag() -> None:
    recorder = Recorder(
        lambda r: {"changed": [3], "skipped": [{"id": 4, "key": "d", "reason": "is done"}]}
    )
    answer = client_for(recorder).retry(
        [3, 4],
        orphans=True,
        campaign_id=7,
        force=True,
        run_args={"timeout": 5, "env": {"FIX": "1"}},
    )
    assert answer.changed == [3] and answer.skipped[0].reason == "is done"
    (request,) = recorder.requests
    assert request.url.path == "/api/v1/records/retry"
    assert json.loads(request.content) == {
        "ids": [3, 4],
        "orphans": True,
        "campaign_id": 7,
        "force": True,
        "force_ignores_success": False,
        "run_args": {"timeout": 5, "env": {"FIX": "1"}},
    }


def test_retry_of_ids_alone_keeps_working() -> None:
    recorder = Recorder(lambda r: {"changed": [1, 2]})
    assert client_for(recorder).retry([1, 2]).changed == [1, 2]
    assert recorder.bodies()[0]["ids"] == [1, 2]
    assert recorder.bodies()[0]["orphans"] is False


def test_orphan_posts_the_token_and_reason() -> None:
    recorder = Recorder(lambda r: {**ACK, "attempts": 0})
    ack = client_for(recorder).orphan(5, "tok", "unknown runner 'podman'")
    assert ack.record_state == wire.RecordState.orphaned and ack.attempts == 0
    (request,) = recorder.requests
    assert request.url.path == "/api/v1/runs/5/orphan"
    assert json.loads(request.content) == {"token": "tok", "reason": "unknown runner 'podman'"}


@pytest.mark.parametrize(("status", "error"), [(404, NotFound), (409, Conflict)])
def test_orphan_errors_follow_the_tree(status: int, error: type[Exception]) -> None:
    recorder = Recorder(lambda r: {"detail": "no", "code": "x"}, status=status)
    with pytest.raises(error):
        client_for(recorder).orphan(5, "tok", "reason")


def test_claim_sends_the_filters() -> None:
    recorder = Recorder(lambda r: {"leases": []})
    leases = client_for(recorder).claim(1, 4, campaign_ids=[7, 8], datasets=["a"])
    assert leases == []
    body = recorder.bodies()[0]
    assert (body["campaign_ids"], body["datasets"], body["max_records"]) == ([7, 8], ["a"], 4)


def test_records_page_filters_by_dataset_and_state() -> None:
    recorder = Recorder(lambda r: {"items": [], "next": None})
    client_for(recorder).records_page(dataset="a", state=wire.RecordState.failed, limit=10)
    params = dict(recorder.requests[0].url.params)
    assert params == {"dataset": "a", "state": "failed", "limit": "10"}


def test_a_filter_is_sent_without_the_fields_it_leaves_blank() -> None:
    """An older server knows no key_prefix or tag and refuses unknown fields: a filter that
    does not use them must not send them (not even as null)."""
    recorder = Recorder(lambda r: {"changed": [], "next": None})
    client = client_for(recorder)
    client.cancel(filter=wire.RecordFilter(campaign_id=3, state=wire.RecordState.ready))
    client.retry(filter=wire.RecordFilter(campaign_id=3, tag="hot", key_prefix="relax-"))
    first, second = recorder.bodies()
    assert first == {"ids": [], "filter": {"campaign_id": 3, "state": "ready", "where": []}}
    assert second["filter"] == {
        "campaign_id": 3, "key_prefix": "relax-", "tag": "hot", "where": [],
    }  # fmt: skip


def test_count_records_posts_the_filter() -> None:
    recorder = Recorder(lambda r: {"total": 4, "states": {"failed": 4}, "last": 17})
    answer = client_for(recorder).count_records(wire.RecordFilter(campaign_id=3, tag="hot"))
    assert answer.total == 4 and answer.states == {wire.RecordState.failed: 4}
    assert recorder.requests[0].url.path == "/api/v1/records/count"
    assert recorder.bodies()[0] == {"campaign_id": 3, "tag": "hot", "where": []}


def _stored(request: httpx.Request) -> httpx.Response:
    if request.method == "HEAD":
        return httpx.Response(200)
    request.read()
    snapshot = {"sha256": request.url.path.rsplit("/", 1)[1], "size": 1, "created_at": NOW}
    return httpx.Response(200, json={"snapshot": snapshot, "created": False})


@pytest.mark.parametrize(
    ("size", "methods"), [(10, ["PUT"]), (HEAD_ABOVE, ["PUT"]), (HEAD_ABOVE + 1, ["HEAD"])]
)
def test_small_uploads_skip_the_head(tmp_path: Any, size: int, methods: list[str]) -> None:
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _stored(request)

    path = tmp_path / "blob"
    path.write_bytes(b"x" * size)
    client = FarmhandClient("http://farmhand.test", "t", transport=httpx.MockTransport(respond))
    sha = client.upload_snapshot(path, run_id=5, token="tok")
    assert sha == sha256_file(path)
    assert [r.method for r in seen] == methods
    assert all(r.url.path == f"/api/v1/snapshots/{sha}" for r in seen)
    # HEAD too: an agent token learns whether the server has bytes it may not read only
    # when it names the live run it uploads for.
    assert all(r.headers["X-Farmhand-Lease"] == "5:tok" for r in seen)
    if methods == ["PUT"]:
        assert seen[0].content == path.read_bytes()
