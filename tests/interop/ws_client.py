"""Drives the server of tests/ws_interop.rs with Python's `websockets` (its threading client).

Usage: ws_client.py ws://127.0.0.1:PORT N
Prints one line per scenario that passed; any failed assertion exits non-zero.
"""

import contextlib
import sys
import threading

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

TIMEOUT = 10


def echo(base):
    with connect(base + "/echo", max_size=None) as ws:
        ws.send("hello")
        assert ws.recv(TIMEOUT) == "hello"
        ws.send(b"\x00\x01\xff")
        assert ws.recv(TIMEOUT) == b"\x00\x01\xff"
        big = "κόσμε " * 20000
        ws.send(big)
        assert ws.recv(TIMEOUT) == big
        # An iterable is sent as one message in several fragments.
        ws.send(["frag", "men", "ted"])
        assert ws.recv(TIMEOUT) == "fragmented"
        assert ws.ping(b"are you there").wait(TIMEOUT), "no pong"
    print("echo ok")


def broadcast(base, clients):
    with contextlib.ExitStack() as stack:
        conns = [stack.enter_context(connect(base + "/chat")) for _ in range(clients)]
        conns[0].send("hi all")
        for ws in conns:
            assert ws.recv(TIMEOUT) == "hi all"
        conns[-1].send(b"bytes too")
        for ws in conns:
            assert ws.recv(TIMEOUT) == b"bytes too"
    print(f"broadcast to {clients} ok")


def duplex(base, n):
    """The server sends n messages from its own thread while we send n of ours."""
    with connect(base + "/duplex") as ws:
        ws.send(f"start {n}")
        received = []

        def read():
            for _ in range(n + 1):
                received.append(ws.recv(TIMEOUT))

        reader = threading.Thread(target=read)
        reader.start()
        for i in range(n):
            ws.send(f"client {i}")
        reader.join(TIMEOUT * 3)
        assert not reader.is_alive(), "the reader is stuck"
        assert received == [f"server {i}" for i in range(n)] + ["server done"], received[:5]
        ws.send("finish")
        try:
            ws.recv(TIMEOUT)
            raise AssertionError("expected the server to close")
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4001, closed
            assert closed.rcvd.reason == "all done", closed
    print(f"duplex {n} ok")


def main():
    base, n = sys.argv[1], int(sys.argv[2])
    echo(base)
    broadcast(base, 5)
    duplex(base, n)


if __name__ == "__main__":
    main()
