"""Checks the contract of `examples/ws_echo.rs` from outside, with Python's `websockets`.

Usage: ws_echo_contract.py HOST:PORT   (the address the example printed after "listening on http://")
"""

import contextlib
import sys
import urllib.request

from websockets.sync.client import connect

TIMEOUT = 10


def main():
    addr = sys.argv[1]
    page = urllib.request.urlopen(f"http://{addr}/", timeout=TIMEOUT).read().decode()
    assert "new WebSocket" in page and '"/echo"' in page and '"/chat"' in page, "the page uses both endpoints"

    # A browser on the page sends its own origin: accepted.
    with connect(f"ws://{addr}/echo", origin=f"http://{addr}") as ws:
        ws.send("hello")
        assert ws.recv(TIMEOUT) == "hello"
        ws.send(b"\x00\xff")
        assert ws.recv(TIMEOUT) == b"\x00\xff"
    print("echo ok")

    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(f"ws://{addr}/chat")) for _ in range(3)]
        clients[1].send("to everyone")
        for ws in clients:
            assert ws.recv(TIMEOUT) == "to everyone"
    print("chat ok")


if __name__ == "__main__":
    main()
