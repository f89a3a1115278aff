"""The test harness's own guard: a server process that lost its port to another worker's
server is noticed, although that other server answers on the port with the same token."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.conftest import LiveServer, _listens_on


def test_a_port_is_ours_only_if_our_process_listens_on_it(
    live_server_factory, live_server: LiveServer
) -> None:
    mine = live_server_factory(process=True)
    assert mine.process is not None and _listens_on(mine.process, mine.port)
    # Another process, while a server (of this test process's thread) listens on the port.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not _listens_on(other, live_server.port)
    finally:
        other.kill()
        other.wait()
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        assert not _listens_on(mine.process, sock.getsockname()[1])
