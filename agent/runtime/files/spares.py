"""Spare run directories: what a finished run leaves empty is renamed into a pool and renamed
into place for the next run, instead of being deleted and made again.

Every record used to make five inodes on the node (its key directory, its run directory,
`checkpoint/`, `stdout.txt`, `stderr.txt`) and delete them again a moment later. On some
file systems that is the agent's largest cost: on ext4 without a journal (this machine's
root), each new inode scans the ones deleted in the last 30 seconds (`recently_deleted`),
and `mkdir` took 374 µs on average with 8 slots of no-op commands (strace); on a parallel
file system each is a round trip to the metadata server. A rename is none of that.

A spare looks like what it replaces: an empty directory, or an empty file, with the mode a
new one would get, owned by the agent, not linked elsewhere. Anything else in a run
directory is removed as before. The pool is `<workdir>/runs/.spare-<pid>-<n>/`, this
agent's own; `clear()` removes it when the agent stops, and `sweep()` removes those of
processes that are gone.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import stat
import threading
from pathlib import Path

__all__ = ["Spares", "current_umask", "filesystem_type"]

log = logging.getLogger("farmhand.agent")

#: Spares of each kind (directories, files) kept at most; the rest are deleted. A pool only
#: holds what runs in flight gave back (claim and delivery come in batches): no more than
#: the agent had in use at once.
LIMIT = 4096


_POOLS = itertools.count()

#: File systems in memory, where the pool does not pay.
IN_MEMORY = frozenset({"tmpfs", "ramfs"})


def filesystem_type(path: Path) -> str | None:
    """The type of the file system `path` is on (`ext4`, `tmpfs`, `lustre`…) from
    /proc/self/mountinfo; None where that cannot be read."""
    try:
        target = os.path.realpath(path)
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
            lines = mounts.readlines()
    except OSError:
        return None
    best, found = -1, None
    for line in lines:
        # "id parent dev root MOUNTPOINT options [optional...] - TYPE source super"
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        point = parts[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:  # the deepest mount holding it; the last wins
            best, found = len(point), rest.split()[0]
    return found


def current_umask() -> int | None:
    """This process's umask as /proc tells it (never changing it: threads may be making
    files), or None where it cannot be read."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return None


class Spares:
    """A pool of empty directories and empty files (as made under `umask`) in `runs_root`,
    for the agent's next runs."""

    def __init__(self, runs_root: Path, *, umask: int, limit: int = LIMIT):
        # Two agents of one process (tests, notebooks) on one work directory: a pool each.
        self.directory = Path(runs_root) / f".spare-{os.getpid()}-{next(_POOLS)}"
        self.limit = limit
        self._uid = os.geteuid()
        self._dir_mode = 0o777 & ~umask
        self._file_mode = 0o666 & ~umask
        self._dirs: list[str] = []
        self._files: list[str] = []
        self._names = itertools.count()
        self._lock = threading.Lock()
        self._made = False

    @classmethod
    def for_agent(cls, workdir: Path) -> Spares | None:
        """The pool of an agent working in `workdir`, or None: on a RAM disk (making and
        deleting there costs less than the pool's renames and checks: -11 % records/s
        measured on tmpfs), when the umask cannot be read, and with FARMHAND_SPARES=off
        (FARMHAND_SPARES=on: a pool on a RAM disk too). The agent's umask makes the
        directories and the output files both (opened before the command's umask applies)."""
        wanted = os.environ.get("FARMHAND_SPARES", "auto")
        umask = current_umask()
        if umask is None or wanted == "off":
            return None
        if wanted != "on" and filesystem_type(Path(workdir)) in IN_MEMORY:
            return None
        return cls(Path(workdir) / "runs", umask=umask)

    # --- into place ----------------------------------------------------------------------

    def place_dir(self, path: Path) -> bool:
        """Rename a spare directory to `path`; False when there is no spare or `path` is
        there already (make it as usual, then). An empty directory at `path` is replaced
        by the spare, which is just like it."""
        return self._place(self._dirs, path, look_first=False)

    def place_file(self, path: Path) -> bool:
        """Rename a spare empty file to `path` unless something is there already (an input
        of that name, which the rename would replace)."""
        return self._place(self._files, path, look_first=True)

    def _place(self, pool: list[str], path: Path, *, look_first: bool) -> bool:
        with self._lock:
            if not pool:
                return False
            name = pool.pop()
        if look_first and os.path.lexists(path):
            with self._lock:
                pool.append(name)
            return False
        try:
            os.rename(f"{self.directory}/{name}", path)
        except OSError:  # a parent missing, say: the caller makes it as usual
            with self._lock:
                pool.append(name)
            return False
        return True

    # --- out of use ----------------------------------------------------------------------

    def keep(self, run_dir: Path) -> bool:
        """Empty `run_dir` into the pool: its empty files and directories become spares
        (the rest is deleted), then the directory itself. False, having changed nothing,
        when it holds a directory that is not empty or not a spare (remove it as usual)."""
        path = os.fspath(run_dir)
        with os.scandir(path) as entries:
            found = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
        subdirs = [name for name, is_dir in found if is_dir]
        for name in subdirs:
            if not self._spare_dir(f"{path}/{name}"):
                return False
        for name in subdirs:
            self._retire(self._dirs, f"{path}/{name}")
        for name, is_dir in found:
            if not is_dir:
                self._retire_file(f"{path}/{name}")
        self._retire_dir(path)
        return True

    def keep_empty_dir(self, path: Path) -> bool:
        """`path` into the pool if it is an empty spare-like directory (the record's key
        directory once its last run is gone); False, leaving it, otherwise."""
        target = os.fspath(path)
        try:
            if not self._spare_dir(target):
                return False
        except OSError:
            return False
        return self._retire(self._dirs, target)

    def _spare_dir(self, path: str) -> bool:
        info = os.lstat(path)
        if not self._ours(info, directory=True) or info.st_nlink != 2:
            return False
        with os.scandir(path) as entries:
            return next(entries, None) is None

    def _retire_dir(self, path: str) -> None:
        info = os.lstat(path)
        if not (self._ours(info, directory=True) and self._retire(self._dirs, path)):
            os.rmdir(path)

    def _retire_file(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            info = os.lstat(path)
            if self._ours(info, directory=False) and info.st_nlink == 1:
                if info.st_size:
                    os.truncate(path, 0)
                if self._retire(self._files, path):
                    return
            os.unlink(path)  # a symlink is unlinked, never followed

    def _ours(self, info: os.stat_result, *, directory: bool) -> bool:
        """Whether a new one would look the same: kind, mode and owner."""
        if directory:
            kind, mode = stat.S_ISDIR(info.st_mode), self._dir_mode
        else:
            kind, mode = stat.S_ISREG(info.st_mode), self._file_mode
        return kind and stat.S_IMODE(info.st_mode) == mode and info.st_uid == self._uid

    def _retire(self, pool: list[str], path: str) -> bool:
        """Rename `path` into the pool; False when the pool is full or the rename fails."""
        with self._lock:
            if len(pool) >= self.limit:
                return False
            name = f"{next(self._names)}"
            made = self._made
        if not made:
            try:
                self.directory.mkdir(exist_ok=True)
            except OSError:
                return False
            self._made = True
        try:
            os.rename(path, f"{self.directory}/{name}")
        except OSError:
            return False
        with self._lock:
            pool.append(name)
        return True

    # --- the pool's own directory --------------------------------------------------------

    def clear(self) -> None:
        """Remove the pool (the agent stops)."""
        with self._lock:
            self._dirs.clear()
            self._files.clear()
        shutil.rmtree(self.directory, ignore_errors=True)
        self._made = False

    @staticmethod
    def sweep(runs_root: Path) -> None:
        """Remove the pools of agent processes that are gone (killed before `clear`)."""
        if not os.path.isdir("/proc/self"):
            return  # no way to tell a live agent's pool here: leave them all
        try:
            entries = list(os.scandir(runs_root))
        except OSError:
            return
        for entry in entries:
            pid = entry.name.removeprefix(".spare-").split("-")[0]
            mine = entry.name.startswith(".spare-") and pid.isdigit()
            if mine and not os.path.exists(f"/proc/{pid}"):
                shutil.rmtree(entry.path, ignore_errors=True)
