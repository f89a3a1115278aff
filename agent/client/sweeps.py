"""Parameter sweeps: many records from one command template and lists of values.

    from farmhand.client import sweeps
    specs = sweeps.sweep_specs(
        "lmp -var T {T} -var a {a} -in in.lmp",
        {"a": [4.0, 4.05], "T": [300, 600]},
        key="a{a}-T{T}",
    )
    client.submit(campaign.id, specs)

A template's placeholders are `{name}` with `name` an identifier, replaced by the param as a
command sees it (`wire.param_text`). Everything else is left as it is, so commands full of
braces keep working: `${T}` is the shell's, `{"a": {"b": 1}}`, `awk '{print $1}'` and
`find . -exec {} \\;` are literal, and `{{name}}` writes a literal `{name}`. A command with no
params is never templated. Pure functions over `farmhand.wire`; the campaign file's
`[[sweep]]` tables (`farmhand submit`) use them too.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from typing import Any

from farmhand import wire

__all__ = ["MAX_SWEEP", "default_key", "expand", "render", "sweep_specs"]

#: At most this many combinations per sweep (a typo in a product should not eat the memory).
MAX_SWEEP = 1_000_000

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# At each position, in this order: an escaped placeholder `{{name}}`, a shell expansion
# `${...}` (left whole, so `${T}` stays the shell's), a placeholder `{name}`. Any other brace
# matches none of them and is copied as it is.
_TEMPLATE = re.compile(
    rf"\{{\{{(?P<escaped>{_IDENT})\}}\}}"  # {{name}}
    r"|\$\{[^}]*\}"  # ${...}
    rf"|\{{(?P<name>{_IDENT})\}}"  # {name}
)


def render(template: str, params: Mapping[str, wire.ParamValue]) -> str:
    """`template` with each `{name}` replaced by `wire.param_text(params[name])`.

    Only `{identifier}` is a placeholder: `${...}` is left for the shell, every other brace is
    literal, and `{{name}}` writes `{name}`. A placeholder that is not in `params` is a
    ValueError naming it and the params there are. Call it only when `params` is non-empty:
    a command or key without params is never a template, so its braces mean what they say.
    """

    def replace(match: re.Match[str]) -> str:
        if match["escaped"] is not None:
            return "{" + match["escaped"] + "}"
        name = match["name"]
        if name is None:  # ${...}
            return match[0]
        if name not in params:
            known = ", ".join(sorted(params)) or "none"
            raise ValueError(
                f"placeholder {{{name}}} is not a param (params: {known}); "
                f"write {{{{{name}}}}} for a literal {{{name}}}"
            )
        return wire.param_text(params[name])

    return _TEMPLATE.sub(replace, template)


def expand(params: Mapping[str, Any], *, zip_lists: bool = False) -> list[dict[str, Any]]:
    """Every combination of the lists in `params` (name -> list of scalars; a scalar is a
    one-element list): their cartesian product, the first name varying slowest and the last
    fastest, or with `zip_lists` the lists paired element by element.

    ValueError for no params, an empty list, a value that is not a string, number or boolean,
    lists of unequal length under `zip_lists`, or more than MAX_SWEEP combinations.
    """
    if not params:
        raise ValueError("no params to sweep: give at least one name = [values]")
    names = list(params)
    lists = [_values(name, params[name]) for name in names]
    if zip_lists:
        lengths = {len(values) for values in lists}
        if len(lengths) > 1:
            shown = ", ".join(
                f"{name}: {len(values)}" for name, values in zip(names, lists, strict=True)
            )
            raise ValueError(f"zip needs lists of one length, not {shown}")
        combinations = zip(*lists, strict=True)
        count = len(lists[0])
    else:
        combinations = itertools.product(*lists)
        count = math.prod(len(values) for values in lists)
    if count > MAX_SWEEP:
        raise ValueError(f"the sweep makes {count} combinations; at most {MAX_SWEEP}")
    # The names as a whole (identifiers, how many) are checked once, on the first.
    found = [dict(zip(names, values, strict=True)) for values in combinations]
    wire.check_params(found[0])
    return found


def _values(name: Any, given: Any) -> list[Any]:
    """The values of one swept param, each checked as a param value."""
    if not isinstance(name, str):
        raise ValueError(f"param name {name!r} must be a string")
    values = list(given) if isinstance(given, (list, tuple)) else [given]
    if not values:
        raise ValueError(f"param {name!r}: the list is empty")
    for value in values:
        wire.check_params({name: value})
    return values


def default_key(params: Mapping[str, wire.ParamValue]) -> str:
    """The key of a record named by its params alone: `T=300,a=4.0` (names in sorted order)."""
    return ",".join(f"{name}={wire.param_text(params[name])}" for name in sorted(params))


def sweep_specs(
    command: str,
    params_lists: Mapping[str, Any],
    *,
    key: str | None = None,
    zip_lists: bool = False,
    **fields: Any,
) -> list[wire.RecordSpec]:
    """One RecordSpec per combination of `params_lists` (see `expand`): the command template
    rendered, the key template rendered (or `default_key`), `params` the combination, and
    `fields` (run_args, priority, dataset, tags, parents, inputs) as for any record.

    ValueError for a bad template or list (see `render`, `expand`), and for two combinations
    that give the same key; pydantic's ValidationError (also a ValueError) for a bad field.
    """
    specs: list[wire.RecordSpec] = []
    seen: dict[str, dict[str, Any]] = {}
    for combination in expand(params_lists, zip_lists=zip_lists):
        name = render(key, combination) if key is not None else default_key(combination)
        if name in seen:
            raise ValueError(
                f"key {name!r} comes from both {default_key(seen[name])} and "
                f"{default_key(combination)}; name every swept param in the key"
            )
        seen[name] = combination
        specs.append(
            wire.RecordSpec(
                key=name, command=render(command, combination), params=combination, **fields
            )
        )
    return specs
