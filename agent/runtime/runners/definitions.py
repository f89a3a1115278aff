"""Runner definitions: the `runners.d/*.toml` files that name and configure runners.

An agent reads `$XDG_CONFIG_HOME/farmhand/runners.d` (default `~/.config/farmhand/runners.d`),
then every `--runners-dir` in order; a later directory may redefine a runner of an earlier
one, two files of one directory may not. Each file holds any number of runners::

    [runners.lammps]
    kind = "container"            # "subprocess", "container" or "python"
    engine = "apptainer"          # podman, docker, apptainer, singularity, shifter, podman-hpc
    image = "/sw/images/lammps.sif"
    setup = "source /opt/env.sh"  # or a list of lines
    binds = ["/scratch"]          # SRC, SRC:DST or SRC:DST:OPTIONS
    env = { OMP_PROC_BIND = "true" }

A definition that is wrong stops the agent at start with a `DefinitionError` naming the file,
the runner and the problem. One whose engine is not installed on this node is listed but not
offered, so the same files can serve a login node and the compute nodes. One that cannot
start commands `BROKEN_AFTER` times in a row is no longer offered either (`Runners.failed`).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from farmhand.runtime.runners import DEFAULT_RUNNER, Runner
from farmhand.runtime.runners.container import ENGINES, ContainerRunner
from farmhand.runtime.runners.subprocess import SubprocessRunner

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["BROKEN_AFTER", "DefinitionError", "Entry", "Runners", "load", "user_runners_dir"]

log = logging.getLogger("farmhand.agent")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
#: Failed starts in a row (see `Runners.failed`) after which an agent stops offering a runner.
BROKEN_AFTER = 3


class DefinitionError(ValueError):
    """A runner definition cannot be used; the message names the file, runner and problem."""


def _lines(value: str | list[str]) -> tuple[str, ...]:
    lines = [value] if isinstance(value, str) else value
    if any(not line.strip() for line in lines):
        raise ValueError("setup lines must not be blank")
    return tuple(lines)


def _env(value: dict[str, str | int | float | bool]) -> dict[str, str]:
    out = {}
    for name, item in value.items():
        if not name or "=" in name:
            raise ValueError(f"{name!r} is not a variable name")
        out[name] = str(item).lower() if isinstance(item, bool) else str(item)
    return out


class _Definition(BaseModel):
    # defer_build here and below: built when a runners.d file is read, not at every start.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    setup: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("setup", mode="before")
    @classmethod
    def _setup(cls, value: Any) -> Any:
        return _lines(value) if isinstance(value, (str, list)) else value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return _env(value) if isinstance(value, dict) else value


class SubprocessDefinition(_Definition):
    """`kind = "subprocess"`: the command runs natively after the `setup` lines."""

    kind: Literal["subprocess"]

    def build(self, name: str) -> Runner:
        """The runner this definition describes."""
        return SubprocessRunner(name, setup=self.setup, env=self.env)


class ContainerDefinition(_Definition):
    """`kind = "container"`: the command runs inside `image` through `engine`."""

    kind: Literal["container"]
    engine: Literal["podman", "docker", "apptainer", "singularity", "shifter", "podman-hpc"]
    image: str | None = Field(default=None, min_length=1)
    binds: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    network: str | None = Field(default=None, min_length=1)
    init: bool = True
    executable: str | None = Field(default=None, min_length=1)
    shell: str = Field(default="/bin/sh", min_length=1)

    @field_validator("binds")
    @classmethod
    def _binds(cls, binds: tuple[str, ...]) -> tuple[str, ...]:
        for bind in binds:
            parts = bind.split(":")
            if len(parts) > 3 or not all(parts) or not all(p.startswith("/") for p in parts[:2]):
                raise ValueError(
                    f"bind {bind!r} is not SRC, SRC:DST or SRC:DST:OPTIONS with absolute paths"
                )
        return binds

    def build(self, name: str) -> Runner:
        """The runner this definition describes."""
        engine = ENGINES[self.engine]
        if self.network is not None and not engine.networks:
            raise ValueError(f"engine {self.engine!r} takes no `network`; use `options`")
        return ContainerRunner(
            name,
            **self.model_dump(exclude={"kind"}),
        )


class PythonDefinition(BaseModel):
    """`kind = "python"`: a runner class of your own, `class = "package.module:Class"`,
    built as `Class(name, **options)`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    kind: Literal["python"]
    class_: str = Field(alias="class", pattern=r"^[\w.]+:[\w.]+$")
    options: dict[str, Any] = Field(default_factory=dict)

    def build(self, name: str) -> Runner:
        """Import the class and build the runner."""
        module_name, _, attribute = self.class_.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot load class {self.class_!r}: {exc}") from exc
        runner = target(name, **self.options)
        if not callable(getattr(runner, "start", None)):
            raise ValueError(f"{self.class_} has no start(launch) method")
        return runner


Definition = Annotated[
    SubprocessDefinition | ContainerDefinition | PythonDefinition, Field(discriminator="kind")
]


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    runners: dict[Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)], Definition] = Field(
        default_factory=dict
    )


@dataclass(frozen=True)
class Entry:
    """One runner an agent knows: where it is defined and whether it can run here."""

    name: str
    kind: str
    runner: Runner
    source: str  # the file, or "built in"
    engine: str | None = None
    image: str | None = None
    problem: str | None = None  # why it is not offered on this node

    def row(self) -> dict[str, Any]:
        """A row for `farmhand agent --list-runners`."""
        return {
            "name": self.name,
            "kind": self.kind,
            "engine": self.engine,
            "image": self.image,
            "status": "offered" if self.problem is None else f"not offered: {self.problem}",
            "source": self.source,
        }


class Runners:
    """The runners an agent knows, by name; `offered()` are those that can run here.

    A runner that could not start the command (`RunnerFailure`, an engine's own error) for
    `BROKEN_AFTER` attempts in a row, with no start that worked between them, is broken:
    no longer offered, with the reason in `broken()`. Attempts report from their own
    threads, hence the lock.
    """

    def __init__(self, entries: Iterable[Entry]):
        self.entries = {entry.name: entry for entry in entries}
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}  # failed starts in a row, by runner
        self._broken: dict[str, str] = {}  # runner -> why it is no longer offered

    def offered(self) -> list[str]:
        """Names this agent can run, sorted: what it tells the server."""
        with self._lock:
            usable = [n for n, e in self.entries.items() if e.problem is None]
            return sorted(n for n in usable if n not in self._broken)

    def get(self, name: str) -> Runner | None:
        """The runner called `name` if it is offered here, else None."""
        entry = self.entries.get(name)
        return entry.runner if entry is not None and self.problem(name) is None else None

    def problem(self, name: str) -> str | None:
        """Why the known runner `name` is not offered here (None: it is, or is unknown)."""
        entry = self.entries.get(name)
        if entry is not None and entry.problem is not None:
            return entry.problem
        with self._lock:
            return self._broken.get(name)

    def broken(self) -> dict[str, str]:
        """The runners no longer offered because they could not start commands, and why."""
        with self._lock:
            return dict(self._broken)

    def worked(self, name: str) -> None:
        """A command of runner `name` started: its count of failures in a row starts over."""
        with self._lock:
            self._failures.pop(name, None)

    def failed(self, name: str, why: str) -> bool:
        """Runner `name` could not start a command, for `why`; True when this failure is
        the one that makes it broken (no longer offered)."""
        with self._lock:
            count = self._failures[name] = self._failures.get(name, 0) + 1
            if count < BROKEN_AFTER or name in self._broken:
                return False
            self._broken[name] = f"{count} starts in a row failed; the last: {why}"[:500]
            return True


def builtin() -> Runners:
    """Only the built-in `subprocess` runner."""
    return Runners([Entry(DEFAULT_RUNNER, "subprocess", SubprocessRunner(), "built in")])


def user_runners_dir(environ: dict[str, str] | None = None) -> Path:
    """`$XDG_CONFIG_HOME/farmhand/runners.d`, default `~/.config/farmhand/runners.d`."""
    env = os.environ if environ is None else environ
    config = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(config) / "farmhand" / "runners.d"


def load(dirs: Sequence[Path] = (), *, user_dir: Path | None = None) -> Runners:
    """The built-in runner plus every definition in `user_dir` (if it exists; default
    `user_runners_dir()`) and in `dirs` (which must exist), later directories winning."""
    entries = builtin().entries
    sources = [(user_dir or user_runners_dir(), False), *((Path(d), True) for d in dirs)]
    for directory, required in sources:
        if not directory.is_dir():
            if required:
                raise DefinitionError(f"runners directory {directory} does not exist")
            continue
        seen: dict[str, Path] = {}
        for path in sorted(directory.glob("*.toml")):
            for entry in _read(path):
                if entry.name in seen:
                    raise DefinitionError(
                        f"{path}: runner {entry.name!r} is already defined in {seen[entry.name]}"
                    )
                seen[entry.name] = path
                if entry.name in entries:
                    log.info(
                        "runner %r from %s replaces %s",
                        entry.name,
                        path,
                        entries[entry.name].source,
                    )
                entries[entry.name] = entry
    return Runners(entries.values())


def _read(path: Path) -> list[Entry]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise DefinitionError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DefinitionError(f"{path}: not valid TOML: {exc}") from exc
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(_describe(path, exc)) from exc
    entries = []
    for name, definition in parsed.runners.items():
        if name == DEFAULT_RUNNER:
            raise DefinitionError(f"{path}: runner {name!r} is built in; choose another name")
        try:
            runner = definition.build(name)
        except (TypeError, ValueError) as exc:
            raise DefinitionError(f"{path}: runner {name!r}: {exc}") from exc
        available = getattr(runner, "available", None)
        entries.append(
            Entry(
                name=name,
                kind=definition.kind,
                runner=runner,
                source=str(path),
                engine=getattr(definition, "engine", None),
                image=getattr(definition, "image", None),
                problem=available() if callable(available) else None,
            )
        )
    return entries


_KINDS = "'subprocess', 'container' or 'python'"
#: Messages for pydantic errors at the level of a whole definition, by error type.
_DEFINITION_ERRORS = {
    "union_tag_invalid": "kind must be " + _KINDS + ", not {tag!r}",
    "union_tag_not_found": "kind is missing: set kind = " + _KINDS,
    "model_attributes_type": "must be a table: [runners.{name}]",
    "dict_type": "must be a table: [runners.{name}]",
}


def _describe(path: Path, exc: ValidationError) -> str:
    """`FILE: runner 'x': engine: Input should be …` from pydantic's first error."""
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"]]
    message = err["msg"].removeprefix("Value error, ")
    if loc[:1] != ["runners"]:
        return f"{path}: unknown top-level key {loc[0]!r} (runners go under [runners.NAME])"
    if len(loc) < 2:
        return f"{path}: runners: must be tables [runners.NAME]"
    name, rest = loc[1], loc[2:]
    if rest == ["[key]"]:
        return f"{path}: runner name {name!r} must match {NAME_PATTERN} (at most 100 characters)"
    if rest and rest[0] in ("subprocess", "container", "python"):
        rest = rest[1:]  # the kind tag pydantic puts in the location
    if not rest:
        tag = err.get("ctx", {}).get("tag")
        text = _DEFINITION_ERRORS.get(err["type"], message)
        return f"{path}: runner {name!r}: " + text.format(tag=tag, name=name)
    if err["type"] == "extra_forbidden":
        return f"{path}: runner {name!r}: unknown key {rest[-1]!r}"
    return f"{path}: runner {name!r}: {'.'.join(rest)}: {message}"
