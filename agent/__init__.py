"""farmhand: a lease server and lightweight agents for ten thousand to ten million calculations
on HPC machines. This package's files are in the repository's agent/ folder (the server's,
`farmhand.server`, in server/).

    import farmhand
    client = farmhand.Client("http://127.0.0.1:8000", token)

`farmhand.Client` is the typed HTTP client (`farmhand.client`), `farmhand.wire` the pydantic
contract every request and answer follows. Inside, one folder per role, imported one way:
wire <- client <- runtime (the agent) <- cli (the `farmhand` command).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from farmhand import wire
    from farmhand.client import FarmhandClient as Client

__all__ = ["Client", "wire"]


def __getattr__(name: str) -> Any:
    # Imported on first use: `python -m farmhand agent` and `farmhand.server` load only what
    # they need (agent start-up time, invariant 4).
    if name == "Client":
        from farmhand.client import FarmhandClient

        return FarmhandClient
    if name == "wire":
        import importlib

        return importlib.import_module("farmhand.wire")
    raise AttributeError(f"module 'farmhand' has no attribute {name!r}")
