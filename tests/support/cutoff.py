"""A relay in front of a live server that a test can cut: while cut, the server is
unreachable to everything that talks through the relay (connections refused at once, open
ones dropped), or only to requests for some paths (their connection dropped before the
request reaches the server), while it stays up for the test's own client. It can also hold
requests for some paths until restored: a server that answers them late."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

__all__ = ["Cutoff"]


class Cutoff:
    """Relay 127.0.0.1:<port> to `target_port`; `cut()` and `restore()` the path."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._cut = threading.Event()
        self._paths: tuple[str, ...] = ()  # cut only requests naming one of these; () all
        self._held: tuple[str, ...] = ()  # requests naming one of these wait for restore()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.refused = 0  #: connections refused while cut
        threading.Thread(target=self._accept, name="cutoff-accept", daemon=True).start()

    def cut(self, *paths: str) -> None:
        """Refuse new connections and drop the open ones; with `paths`, drop only the
        connections that send a request whose path holds one of them."""
        self._paths = paths
        self._cut.set()
        if paths:
            return
        with self._lock:
            doomed, self._open = self._open, set()
        for sock in doomed:
            _drop(sock)

    def hold(self, *paths: str) -> None:
        """Keep requests whose path holds one of `paths` from the server until `restore()`
        (a slow answer, where `cut` is an unreachable server)."""
        self._held = paths

    def restore(self) -> None:
        """Relay again (held requests go on)."""
        self._held = ()
        self._cut.clear()

    def close(self) -> None:
        """Stop relaying for good."""
        self.cut()
        _drop(self._listener)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set() and not self._paths:
                self.refused += 1
                _drop(conn)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                _drop(conn)
                continue
            with self._lock:
                self._open.update((conn, upstream))
            threading.Thread(target=self._requests, args=(conn, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, conn), daemon=True).start()

    def _refuses(self, path: str) -> bool:
        paths = self._paths
        return self._cut.is_set() and (not paths or any(p in path for p in paths))

    def _requests(self, src: socket.socket, dst: socket.socket) -> None:
        """Relay HTTP/1.1 requests one by one (httpx does not pipeline), each looked at."""
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = src.recv(1 << 16)
                    if not chunk:
                        raise EOFError
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                request, *lines = head.decode("latin-1").split("\r\n")
                path = request.split(" ")[1]
                if self._refuses(path):
                    self.refused += 1
                    break
                while any(p in path for p in self._held):
                    time.sleep(0.01)
                dst.sendall(head + b"\r\n\r\n")
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)
                }
                if "chunked" in headers.get("transfer-encoding", ""):
                    dst.sendall(buf)  # no framing to follow: relay the rest as it comes
                    self._pump(src, dst)
                    return
                left = int(headers.get("content-length", "0"))
                body, buf = buf[:left], buf[left:]
                dst.sendall(body)
                left -= len(body)
                while left > 0:
                    chunk = src.recv(min(1 << 16, left))
                    if not chunk:
                        raise EOFError
                    dst.sendall(chunk)
                    left -= len(chunk)
        except (OSError, EOFError):
            pass
        self._close(src, dst)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(1 << 16):
                dst.sendall(chunk)
        except OSError:
            pass
        self._close(src, dst)

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            with self._lock:
                self._open.discard(sock)
            _drop(sock)


def _drop(sock: socket.socket) -> None:
    """Close a socket, waking any thread blocked on it (close alone does not)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
