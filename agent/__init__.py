"""farmhand: a lease server and lightweight agents for ten thousand to ten million calculations
on HPC machines. This package's files are in the repository's agent/ folder (the server's,
`farmhand.server`, in server/).

    import farmhand
    fh = farmhand.connect()                 # FARMHAND_SERVER / FARMHAND_TOKEN, or arguments
    c = fh.campaign("eos")                  # get or create; "eos:2" names a version
    c.sweep("./relax --a {a} --T {T}", a=[4.0, 4.05], T=[300, 600])
    rows = c.results(where="T>=600")

`farmhand.connect()` gives the campaign handles of `farmhand.client.campaigns` (docs/python.md);
`farmhand.Client` is the typed HTTP client underneath (`farmhand.client`), `farmhand.Record`
a record to submit and `farmhand.wire` the pydantic contract every request and answer follows.
Inside, one folder per role, imported one way: wire <- client <- runtime (the agent) <- cli
(the `farmhand` command).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from farmhand import wire
    from farmhand.client import FarmhandClient as Client
    from farmhand.client.campaigns import Campaign, Connection, connect
    from farmhand.client.errors import FarmhandError
    from farmhand.wire import RecordSpec as Record

__all__ = ["Campaign", "Client", "Connection", "FarmhandError", "Record", "connect", "wire"]

# Imported on first use: `python -m farmhand agent` and `farmhand.server` load only what they
# need (agent start-up time, invariant 4).
_LAZY = {
    "Campaign": ("farmhand.client.campaigns", "Campaign"),
    "Client": ("farmhand.client", "FarmhandClient"),
    "Connection": ("farmhand.client.campaigns", "Connection"),
    "FarmhandError": ("farmhand.client.errors", "FarmhandError"),
    "Record": ("farmhand.wire", "RecordSpec"),
    "connect": ("farmhand.client.campaigns", "connect"),
}


def __getattr__(name: str) -> Any:
    if name == "wire":
        return importlib.import_module("farmhand.wire")
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'farmhand' has no attribute {name!r}")
