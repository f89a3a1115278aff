"""Record parameters and the filters over them (`--where 'T>=600'`).

A record's `params` is a flat mapping of names to scalars: strings, integers, floats,
booleans. Names are identifiers, so a name is safe in a JSON path, an environment variable
(`FARMHAND_PARAM_<NAME>`) and a template placeholder (`{name}`). A filter is
`NAME OP VALUE`, with OP one of `= == != < <= > >=`; the value's type decides what matches:
a number matches numeric parameters (4 = 4.0), `true`/`false` booleans, anything else (or
anything in quotes) strings. A parameter of another type never matches, and neither does a
record without the parameter.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

__all__ = [
    "MAX_PARAMS",
    "OPERATORS",
    "Condition",
    "ParamValue",
    "Params",
    "check_params",
    "param_text",
    "parse_where",
]

#: At most this many parameters per record, each name at most MAX_NAME characters and each
#: string value at most MAX_VALUE characters.
MAX_PARAMS = 64
MAX_NAME = 64
MAX_VALUE = 1024
#: Whole numbers both databases compare exactly in a JSON document (64 bits).
MAX_WHOLE = 2**63 - 1
#: Parameter names: identifiers (letters, digits, `_`; not starting with a digit).
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Comparison operators, longest first (so `>=` is not read as `>`).
OPERATORS = ("==", "!=", "<=", ">=", "=", "<", ">")
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(==|!=|<=|>=|=|<|>)\s*(.*?)\s*$", re.S)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")

ParamValue = bool | int | float | str


def check_params(value: dict[str, ParamValue]) -> dict[str, ParamValue]:
    """Validate a params mapping (names, scalar values, sizes); returns it sorted by name."""
    if not value:
        return value
    if len(value) > MAX_PARAMS:
        raise ValueError(f"at most {MAX_PARAMS} params per record, not {len(value)}")
    for name, item in value.items():
        if len(name) > MAX_NAME or not NAME.fullmatch(name):
            raise ValueError(
                f"param name {name!r} must be an identifier (letters, digits, _) of at most "
                f"{MAX_NAME} characters"
            )
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"param {name!r}: {item} is not a JSON number")
        if isinstance(item, int) and not -MAX_WHOLE <= item <= MAX_WHOLE:
            raise ValueError(f"param {name!r}: {item} is beyond 64 bits")
        if isinstance(item, str) and (len(item) > MAX_VALUE or "\x00" in item):
            raise ValueError(f"param {name!r}: strings hold at most {MAX_VALUE} characters, no NUL")
        if not isinstance(item, (bool, int, float, str)):
            raise ValueError(f"param {name!r} must be a string, number or boolean, not {item!r}")
    return dict(sorted(value.items()))


#: A record's parameters (`check_params`). Strict so that "300" stays a string and 300 a number.
Params = Annotated[dict[str, bool | int | float | str], AfterValidator(check_params)]


def param_text(value: ParamValue) -> str:
    """A parameter as a command or an environment variable sees it: `true`/`false` for
    booleans, the shortest round-tripping form for numbers, strings as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Condition:
    """One filter over a parameter: `name op value` (`op` normalised: `==` is `=`)."""

    name: str
    op: str
    value: ParamValue

    @property
    def kind(self) -> str:
        """What the value compares as: `number`, `boolean` or `string`."""
        if isinstance(self.value, bool):
            return "boolean"
        return "number" if isinstance(self.value, (int, float)) else "string"

    def __str__(self) -> str:
        value = self.value
        shown = param_text(value) if not isinstance(value, str) else repr(value)
        return f"{self.name}{self.op}{shown}"


def parse_where(text: str) -> Condition:
    """Read one filter, `T>=600`, `a=4.05`, `phase='fcc'`, `relaxed=true`; ValueError naming
    the problem if it is not one."""
    match = _CONDITION.match(text)
    if match is None:
        raise ValueError(
            f"filter {text!r} is not NAME OP VALUE (OP one of {' '.join(OPERATORS)}), "
            "e.g. 'T>=600' or \"phase='fcc'\""
        )
    name, op, raw = match.groups()
    if op == "==":
        op = "="
    if raw == "":
        raise ValueError(f"filter {text!r} has no value after {op!r}")
    value: ParamValue
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        value = raw[1:-1]
    elif raw in ("true", "false"):
        value = raw == "true"
    elif _NUMBER.match(raw):
        number = float(raw)
        if not math.isfinite(number):
            raise ValueError(f"filter {text!r}: {raw} is not a finite number")
        value = int(raw) if re.fullmatch(r"[+-]?\d+", raw) else number
        if isinstance(value, int) and abs(value) > MAX_WHOLE:
            raise ValueError(f"filter {text!r}: {raw} is beyond 64 bits")
    elif raw[0] in "=<>!":
        raise ValueError(
            f"filter {text!r} is not NAME OP VALUE (OP one of {' '.join(OPERATORS)}); "
            "quote a value that starts with one of = < > !"
        )
    else:
        value = raw
    if isinstance(value, bool) and op not in ("=", "!="):
        raise ValueError(f"filter {text!r}: booleans compare only with = or !=")
    if isinstance(value, str) and (len(value) > MAX_VALUE or "\x00" in value):
        raise ValueError(f"filter {text!r}: the value is too long or holds a NUL character")
    return Condition(name, op, value)
