"""The parent graph of records about to be submitted, as the client sees it: the records in
one file or one `submit` call (parents that already live on the server are the server's to
check)."""

from __future__ import annotations

from farmhand import wire

__all__ = ["on_cycles", "parents_first"]


def _local_parents(records: list[wire.RecordSpec]) -> dict[str, list[str]]:
    """Each record's parents that are keys of records in the list."""
    keys = {spec.key for spec in records}
    return {
        spec.key: [p for p in spec.parents if isinstance(p, str) and p in keys] for spec in records
    }


def on_cycles(records: list[wire.RecordSpec]) -> list[str]:
    """Keys of the records that are on (or below) a cycle of parents, sorted; [] if none."""
    # Kahn's algorithm: peel off records with no parent left; what remains hangs on a cycle.
    left = {key: set(parents) for key, parents in _local_parents(records).items()}
    children: dict[str, list[str]] = {}
    for key, parents in left.items():
        for parent in parents:
            children.setdefault(parent, []).append(key)
    free = [key for key, parents in left.items() if not parents]
    while free:
        key = free.pop()
        del left[key]
        for child in children.get(key, []):
            left[child].discard(key)
            if not left[child]:
                free.append(child)
    return sorted(left)


def parents_first(records: list[wire.RecordSpec]) -> list[wire.RecordSpec]:
    """The records in their order, except that each comes after its parents in the list
    (so a submission cut into chunks never names a parent a later chunk brings). A cycle is
    left as it is found: the server refuses it with the keys named."""
    by_key = {spec.key: spec for spec in records}
    local = _local_parents(records)
    placed: set[str] = set()
    out: list[wire.RecordSpec] = []
    for spec in records:
        # Depth first without recursion (chains may be long): parents before the record.
        stack = [(spec.key, iter(local[spec.key]))]
        entered = {spec.key}
        while stack:
            key, parents = stack[-1]
            parent = next((p for p in parents if p not in placed and p not in entered), None)
            if parent is not None:
                entered.add(parent)
                stack.append((parent, iter(local[parent])))
                continue
            stack.pop()
            if key not in placed:
                placed.add(key)
                out.append(by_key[key])
    return out
