"""A loopback TCP relay a test can hold and cut: what a client's connection to a server looks like
when the network loses it at a chosen moment (the drop copy with acknowledgements in flight).

``TcpCut(port)`` listens on a free port of its own and relays every connection to ``port``.
``hold()`` stops relaying the server's bytes to the clients (kept back, never delivered: lost with
the connection); ``cut()`` closes every connection relayed so far and relays new ones normally.
``close()`` ends it (on every path: a fixture's finally).
"""
from __future__ import annotations

import selectors
import socket
import threading


class TcpCut:
    def __init__(self, port: int):
        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.pairs: dict[socket.socket, tuple[socket.socket, bool]] = {}   # sock -> (peer, from the server)
        self.lock = threading.Lock()
        self.holding = False
        self.held = 0                     # bytes of the server's kept back
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def hold(self) -> None:
        with self.lock:
            self.holding = True

    def cut(self) -> None:
        with self.lock:
            for sock in list(self.pairs):
                self._drop(sock)
            self.holding = False

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        with self.lock:
            for sock in list(self.pairs):
                self._drop(sock)
        self.selector.close()
        self.listener.close()

    def _drop(self, sock: socket.socket) -> None:
        peer, _ = self.pairs.pop(sock, (None, False))
        for s in (sock, peer):
            if s is None:
                continue
            self.pairs.pop(s, None)
            try:
                self.selector.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()

    def _run(self) -> None:
        while not self.stopping.is_set():
            for key, _ in self.selector.select(0.05):
                with self.lock:
                    if key.fileobj is self.listener:
                        self._accept()
                    elif key.fileobj in self.pairs:
                        self._relay(key.fileobj)

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        server = socket.create_connection(self.target, timeout=5)
        for sock, peer, from_server in ((client, server, False), (server, client, True)):
            sock.setblocking(True)
            self.pairs[sock] = (peer, from_server)
            self.selector.register(sock, selectors.EVENT_READ)

    def _relay(self, sock: socket.socket) -> None:
        peer, from_server = self.pairs[sock]
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        if from_server and self.holding:
            self.held += len(data)
            return
        try:
            peer.sendall(data)
        except OSError:
            self._drop(sock)
