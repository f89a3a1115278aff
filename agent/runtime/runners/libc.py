"""glibc's (or musl's) `posix_spawn` called through ctypes, so that the GIL is free while
the child starts.

`os.posix_spawn` holds the GIL for the whole call, and the call lasts until the child has
exec'd its program: the C library starts the child with a vfork-like clone, which suspends
the calling thread until the exec. Measured here: ~500 µs per `sh -c true`, during which no
other thread of the agent ran Python (py-spy: 18 % of the GIL's time with 8 slots of no-op
commands). A ctypes call into a `CDLL` releases the GIL around the C call, so the agent's
other threads go on while one thread waits for its child to exec.

The rest (the attribute object, the file actions, the string arrays) is built with the GIL
held (`PyDLL`): those calls are microseconds long, and giving the GIL away at each one would
cost a thread switch apiece. The attribute object never changes, so it is built once.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Iterable, Sequence

__all__ = ["Libc", "libc"]

# The flag values glibc and musl share (<spawn.h>).
_SETSIGDEF = 0x04
_SETSIGMASK = 0x08
_SETSID = 0x80
#: Room for posix_spawnattr_t (336 bytes on glibc x86_64), posix_spawn_file_actions_t (80)
#: and sigset_t (128): larger than any C library's, so the layout never matters here.
_OPAQUE = 1024


class Libc:
    """The C library's spawn functions with a fixed attribute object: a new session, the
    signals in `default_signals` back to their default, an empty signal mask."""

    def __init__(self, default_signals: Iterable[int]):
        spawn_lib = ctypes.CDLL(None, use_errno=True)  # calls release the GIL
        held = ctypes.PyDLL(None)  # calls keep it (they take microseconds)
        self._spawn = spawn_lib.posix_spawn
        self._spawn.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_void_p,
                                ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]  # fmt: skip
        self._fa_init = held.posix_spawn_file_actions_init
        self._fa_open = held.posix_spawn_file_actions_addopen
        self._fa_open.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p,
                                  ctypes.c_int, ctypes.c_uint]  # fmt: skip
        self._fa_destroy = held.posix_spawn_file_actions_destroy
        self._attr = ctypes.create_string_buffer(_OPAQUE)
        self._default = ctypes.create_string_buffer(_OPAQUE)
        self._empty = ctypes.create_string_buffer(_OPAQUE)
        checks = [
            held.posix_spawnattr_init(self._attr),
            held.sigemptyset(self._default),
            *(held.sigaddset(self._default, signum) for signum in default_signals),
            held.sigemptyset(self._empty),
            held.posix_spawnattr_setsigdefault(self._attr, self._default),
            held.posix_spawnattr_setsigmask(self._attr, self._empty),
            held.posix_spawnattr_setflags(
                self._attr, ctypes.c_short(_SETSID | _SETSIGDEF | _SETSIGMASK)
            ),
        ]
        if any(checks):
            raise OSError(f"cannot build the posix_spawn attributes ({checks})")

    def spawn(
        self,
        path: bytes,
        argv: Sequence[bytes],
        envp: Sequence[bytes],
        opens: Sequence[tuple[int, bytes, int, int]],
    ) -> int:
        """Start `path` with `argv` and `envp` ("KEY=value" entries) after opening each
        (fd, path, flags, mode) of `opens` in the child; the child's pid. OSError with the C
        library's errno when it cannot (the program, or one of the files)."""
        actions = ctypes.create_string_buffer(_OPAQUE)
        if self._fa_init(actions):
            raise OSError(ctypes.get_errno(), "posix_spawn_file_actions_init failed")
        try:
            for fd, file, flags, mode in opens:
                err = self._fa_open(actions, fd, file, flags, mode)
                if err:
                    raise OSError(err, os.strerror(err), os.fsdecode(file))
            args = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
            env = (ctypes.c_char_p * (len(envp) + 1))(*envp, None)
            pid = ctypes.c_int()
            err = self._spawn(ctypes.byref(pid), path, actions, self._attr, args, env)
        finally:
            self._fa_destroy(actions)
        if err:
            raise OSError(err, os.strerror(err))
        return pid.value


@functools.cache
def libc(default_signals: tuple[int, ...]) -> Libc | None:
    """The C library's spawn with these default signals, or None where ctypes cannot reach
    it (no ctypes, a static build, a C library without these functions)."""
    try:
        return Libc(default_signals)
    except (OSError, AttributeError, TypeError):
        return None
