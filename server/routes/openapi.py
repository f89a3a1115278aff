"""What `/docs` and `/redoc` show besides the schemas: tags, error responses, request examples.

The convention for every route under `/api/v1`:

- `summary=` a short imperative line, the docstring the description (what happens, what
  comes back, what is refused);
- `responses=errors(...)`: the 4xx codes the route can answer besides 401 and 403 (every
  route needs a token, so those two are always listed), each documented with the one error
  body, `wire.ErrorBody` (`{detail, code}`), what it means and an example;
- `openapi_extra=examples(...)` on routes with a request body worth showing: named
  examples FastAPI merges into the generated request body, so Swagger UI's *Try it out*
  starts from a body that works.

`tests/server/routes/test_openapi.py` walks `/openapi.json` and fails for a route that misses one.
"""

from __future__ import annotations

from typing import Any

from farmhand import wire

#: Per code: what it means, an example detail and its machine code.
ERRORS: dict[int, tuple[str, str, str]] = {
    400: (
        "The request cannot be taken as sent (uploaded bytes that do not hash to the name).",
        "the uploaded bytes hash to 3a7b…, not 9f86…; nothing was kept",
        "hash_mismatch",
    ),
    401: (
        "No bearer token, or an unknown or revoked one.",
        "unknown or revoked token",
        "unauthorized",
    ),
    403: (
        "The token's role may not do this, or an agent token named an agent, run or snapshot "
        "that is not its own (agents it registered, their runs, what their leases need).",
        "a agent token may not do this; it needs: admin, submitter",
        "forbidden",
    ),
    404: (
        "The campaign, record, agent or run does not exist.",
        "record 17 does not exist",
        "not_found",
    ),
    409: (
        "The record, agent or lease is not in a state that allows this (a stale lease token, "
        "a record that already ended, a stopped agent); nothing changed.",
        "record 'relax-017' cannot go from done to cancelled (cancel); cancel needs a record "
        "that is claimed or orphaned or ready or running or waiting",
        "invalid_transition",
    ),
    413: (
        "The request body is larger than the server's limit (`FARMHAND_MAX_BODY_BYTES`).",
        "request body is 80000000 bytes; the limit is 67108864",
        "too_large",
    ),
    416: (
        "The requested byte range lies outside the snapshot.",
        "range 'bytes=5000-6000' lies outside 4096 bytes",
        "range",
    ),
    422: (
        "The request is malformed, or names something that cannot be used; `detail` names "
        "each problem, `errors` lists them one by one.",
        "invalid request: records.0.command: Field required",
        "invalid",
    ),
}
ALWAYS = (401, 403)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: 401, 403 and `codes`, each with `wire.ErrorBody`."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in sorted({*ALWAYS, *codes}):
        meaning, detail, machine = ERRORS[code]
        out[code] = {
            "model": wire.ErrorBody,
            "description": meaning,
            "content": {"application/json": {"example": {"detail": detail, "code": machine}}},
        }
    return out


def examples(**named: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra=` naming example request bodies: `examples(minimal={...}, full={...})`."""
    shown = {
        name.replace("_", " "): {"summary": name.replace("_", " "), "value": value}
        for name, value in named.items()
    }
    return {"requestBody": {"content": {"application/json": {"examples": shown}}}}


#: Tag order and descriptions for `/docs` and `/redoc`.
TAGS: list[dict[str, str]] = [
    {
        "name": "campaigns",
        "description": "Named, versioned groups of records, with counts by state. Start here: "
        "create a campaign, then submit records to it.",
    },
    {
        "name": "records",
        "description": "Calculations: submit in bulk, list with filters and keyset paging, "
        "inspect (spec, derived run_args, result, every run), cancel and retry.",
    },
    {
        "name": "agents",
        "description": "Worker processes: register, heartbeat (renews every lease at once), "
        "drain, stop; and `GET /status`, why ready records are not moving.",
    },
    {
        "name": "leases",
        "description": "The claim: one transaction leases ready records to an agent, "
        "matching its runners and free resources; optionally long-polls.",
    },
    {
        "name": "runs",
        "description": "Attempts, and the reports agents send about them (start, complete, "
        "fail, orphan, release), each fenced by its lease token.",
    },
    {
        "name": "snapshots",
        "description": "Files by sha256 (inputs, output archives, checkpoints): streamed, "
        "verified upload; HEAD to skip what the server has; ranged download.",
    },
    {
        "name": "bundles",
        "description": "Move campaigns between servers (export pages, idempotent import) and "
        "take a consistent backup of a running SQLite server.",
    },
    {
        "name": "allocations",
        "description": "Elastic allocation (`farmhand autoscale`): the backlog by need, the "
        "batch jobs autoscalers submitted, and the lease one autoscaler holds per name.",
    },
    {"name": "tokens", "description": "Bearer tokens with a role (admin only)."},
    {"name": "health", "description": "Liveness, without a token."},
]


# --- request examples ----------------------------------------------------------------------

TOKEN = "0bY2m1Qx7c0pYbWc3n9KqV1r"  # a lease token, as a claim hands it out

CAMPAIGN = examples(
    minimal={"name": "relax"},
    with_defaults={
        "name": "relax",
        "software": "lammps 2Aug2023",
        "defaults": {"cores": 4, "walltime": "2:00:00", "max_attempts": 2},
        "based_on": "relax:1",
    },
)
TOKEN_CREATE = examples(submitter={"role": "submitter", "name": "alice"})
RECORDS = examples(
    commands={
        "campaign_id": 1,
        "records": [
            {"key": "fcc-Al", "command": "python relax.py Al fcc"},
            {"key": "bcc-Fe", "command": "python relax.py Fe bcc", "run_args": {"cores": 8}},
        ],
    },
    with_parents_dataset_and_tags={
        "campaign_id": 1,
        "records": [
            {"key": "relax-Al", "command": "python relax.py Al", "dataset": "fcc", "tags": ["Al"]},
            {
                "key": "phonons-Al",
                "command": "python phonons.py",
                "parents": ["relax-Al"],
                "run_args": {"runner": "lammps", "gpus": 1, "memory": "8G"},
                "priority": 10,
            },
        ],
    },
    replace_what_changed={
        "campaign_id": 1,
        "records": [{"key": "fcc-Al", "command": "python relax.py Al fcc --tight"}],
        "force": True,
    },
    a_new_campaign_with_its_records={
        "campaign": {"name": "relax", "software": "vasp-6.4", "defaults": {"timeout": "2h"}},
        "records": [{"key": "fcc-Al", "command": "python relax.py Al fcc"}],
    },
    check_only={
        "campaign_id": 1,
        "records": [{"key": "bcc-Fe", "command": "python relax.py Fe bcc", "parents": ["fcc-Al"]}],
        "dry_run": True,
    },
)
RECORD_IDS = examples(
    two_records={"ids": [17, 18]},
    by_filter={"filter": {"campaign_id": 1, "state": "failed", "key_prefix": "relax-"}},
)
RECORD_FILTER = examples(
    failed_hot_ones={"campaign_id": 1, "state": "failed", "tag": "hot", "where": ["T>=600"]},
    by_key_prefix={"campaign_id": 1, "key_prefix": "relax-01"},
)
RETRY = examples(
    failed_ones={"ids": [17]},
    with_temporary_run_args={"ids": [17], "run_args": {"timeout": 1800}},
    every_orphan_of_a_campaign={"orphans": True, "campaign_id": 1},
)
AGENT = examples(
    compute_node={
        "name": "cn017-4242",
        "host": "cn017",
        "pid": 4242,
        "slots": 8,
        "runners": ["subprocess", "lammps"],
        "resources": {"cores": 32, "gpus": 4, "memory_mb": 131072},
    }
)
HEARTBEAT = examples(two_runs={"run_ids": [101, 102], "status": {"outbox": 0}})
CLAIM = examples(
    one={"agent_id": 1},
    long_poll_matching_resources={
        "agent_id": 1,
        "max_records": 8,
        "wait": 30,
        "runners": ["subprocess", "lammps"],
        "free": {"cores": 16, "gpus": 2, "memory_mb": 65536},
        "walltime_left": 7200,
    },
)
RUN_START = examples(started={"token": TOKEN})
RUN_COMPLETE = examples(
    done={
        "token": TOKEN,
        "exit_code": 0,
        "result": {"energy": -3.36, "volume": 16.5},
        "stdout_tail": "converged after 12 steps\n",
    }
)
RUN_FAIL = examples(
    exit_code={
        "token": TOKEN,
        "error": "exit code 3",
        "exit_code": 3,
        "stderr_tail": "ValueError: negative volume\n",
    }
)
RUN_ORPHAN = examples(unknown_runner={"token": TOKEN, "reason": "runner 'lammps' is not defined"})
RUN_RELEASE = examples(shutting_down={"token": TOKEN, "reason": "agent shutting down"})
RUN_REPORTS = examples(
    one_of_each={
        "reports": [
            {
                "run_id": 101,
                "token": TOKEN,
                "verb": "complete",
                "exit_code": 0,
                "result": {"energy": -3.36},
            },
            {"run_id": 102, "token": TOKEN, "verb": "fail", "exit_code": 1, "error": "exit code 1"},
            {"run_id": 103, "token": TOKEN, "verb": "release", "reason": "agent shutting down"},
            {"run_id": 104, "token": TOKEN, "verb": "orphan", "reason": "no runner 'podman'"},
        ]
    }
)
RUN_STARTS = examples(
    two_started={"starts": [{"run_id": 101, "token": TOKEN}, {"run_id": 102, "token": TOKEN}]}
)
CHECKPOINT = examples(
    newest={
        "token": TOKEN,
        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    }
)
BUNDLE = examples(
    one_done_record={
        "campaign": {"name": "relax", "version": 1, "created_at": "2026-11-20T09:00:00Z"},
        "records": [
            {
                "key": "relax-001",
                "command": "python relax.py --structure 1",
                "state": "done",
                "attempts": 1,
                "max_attempts": 3,
                "result": {"energy": -3.36},
                "result_run": 7,
                "created_at": "2026-11-20T09:00:01Z",
                "runs": [
                    {
                        "id": 7,
                        "attempt": 1,
                        "state": "done",
                        "claimed_at": "2026-11-20T09:01:00Z",
                        "ended_at": "2026-11-20T09:05:00Z",
                        "exit_code": 0,
                    }
                ],
            }
        ],
    }
)

SCALER_TOKEN = "r7Qm2xW0c9bVn4Lk8sTz1pYa5dFh3gJe"
ALLOCATION = examples(
    slurm_job={
        "autoscaler": "slurm:campaign=relax",
        "token": SCALER_TOKEN,
        "scheduler": "slurm",
        "job_id": "4242",
        "submitted_for": {"records": 40, "cores": 32, "gpus": 0, "time_limit": 3600},
    }
)
ALLOCATION_UPDATE = examples(running={"token": SCALER_TOKEN, "state": "running"})
AUTOSCALER_ACQUIRE = examples(login_node={"holder": "login1:31337", "ttl": 120})
AUTOSCALER_RENEW = examples(
    idle={"token": SCALER_TOKEN, "ttl": 120, "status": {"idle": True, "message": "idle"}}
)
AUTOSCALER_RELEASE = examples(stopping={"token": SCALER_TOKEN})
