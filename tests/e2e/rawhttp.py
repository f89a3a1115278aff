"""Raw-socket HTTP for tests that misbehave on purpose: half-sent requests, endless bodies."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

MIB = 1024 * 1024


def connect(port: int) -> socket.socket:
    """A plain TCP connection to the server on loopback."""
    return socket.create_connection(("127.0.0.1", port), timeout=60)


def closed_by_server(sock: socket.socket, within: float = 60.0) -> bool:
    """Wait (up to `within` seconds, generous) for the server to close the connection."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def still_open(sockets: list[socket.socket], within: float = 60.0) -> list[int]:
    """Wait (up to `within` seconds in all, generous) for the server to close every one of
    `sockets`; the indexes of those it left open."""
    waiting = dict(enumerate(sockets))
    deadline = time.monotonic() + within
    while waiting and (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select(list(waiting.values()), [], [], left)
        for sock in readable:
            index = next(i for i, s in waiting.items() if s is sock)
            try:
                if sock.recv(65536):
                    continue  # an answer before the close: keep waiting for the close
            except ConnectionResetError:
                pass
            del waiting[index]
    return sorted(waiting)


def chunks(total: int, size: int = MIB, first: bytes = b"") -> Iterator[bytes]:
    """`first`, then JSON whitespace up to `total` bytes, made lazily one chunk at a time."""
    if first:
        yield first
    filler = b" " * size
    left = total - len(first)
    while left > 0:
        yield filler[: min(size, left)]
        left -= size


def send_chunked(
    port: int, method: str, path: str, body: Iterator[bytes], headers: dict[str, str]
) -> tuple[int, bytes, int]:
    """Send a chunked request and stop sending as soon as the server answers (or hangs up).
    Returns (status, response bytes, body bytes sent)."""
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    sock = connect(port)
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    sent = 0
    pieces = (b"%x\r\n%s\r\n" % (len(c), c) for c in body)
    pending = b""
    done = False
    try:
        while True:
            if not pending and not done:
                piece = next(pieces, None)
                pending, done = (b"0\r\n\r\n", True) if piece is None else (piece, False)
            readable, writable, _ = select.select([sock], [sock] if pending else [], [], 60)
            if readable or not (readable or writable):
                break  # an answer (or nothing at all for a minute): stop sending
            n = sock.send(pending)
            sent += n
            pending = pending[n:]
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server hung up while we were sending: read what it said
    answer = b""
    sock.settimeout(60)
    try:
        while data := sock.recv(65536):
            answer += data
            if _complete(answer):
                break
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer, sent


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")
