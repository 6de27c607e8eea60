"""TCP proxies for tests: a broker reached through a socket the test controls.

``TcpProxy`` forwards each connection accepted on one port of 127.0.0.1 to another. Subclasses
shape a connection as it is accepted (``TlsProxy`` in tests/tls.py terminates TLS) or watch the
bytes each way (``KafkaResponseCut`` takes the broker away right after a chosen response).
Start the broker advertising the proxy's port (``start_broker(advertised_port=...)``) so that
every connection, the bootstrap's and the partition leaders', goes through the proxy.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Self

# Watches the bytes one connection carries one way: returns what to forward and whether to cut
# every connection once it is forwarded.
Watch = Callable[[bytes], tuple[bytes, bool]]


def _forward(data: bytes) -> tuple[bytes, bool]:
    return data, False


class TcpProxy:
    """Forwards each connection accepted on ``listen_port`` to ``target_port`` (both on 127.0.0.1)."""

    def __init__(self, listen_port: int, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.create_server(("127.0.0.1", listen_port))
        self.sock.settimeout(0.2)
        self._clients: set[socket.socket] = set()
        self._upstreams: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="test-proxy")
        self._thread.start()

    def accepted(self, conn: socket.socket) -> socket.socket | None:
        """The client's side of a new connection, ready to forward; None drops it."""
        return conn

    def watch(self) -> tuple[Watch, Watch]:
        """Watchers for one new connection: of the server's bytes to the client, and of the client's to the server."""
        return _forward, _forward

    def cut(self) -> None:
        """Stop accepting and end every connection: to its clients, the server is gone.

        A client reads everything forwarded so far, then the end of the stream. Its socket is only
        half closed until ``close()``: closing one with unread requests in it would send a reset,
        and the client could lose the last response."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.close()
        with self._lock:
            for s in self._upstreams:
                with contextlib.suppress(OSError):
                    s.close()
            for s in self._clients:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_WR)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        client = self.accepted(conn)
        if client is None:
            return
        client.settimeout(None)
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            if self._stop.is_set():
                client.close()
                upstream.close()
                return
            self._clients.add(client)
            self._upstreams.add(upstream)
        down, up = self.watch()
        threading.Thread(target=self._pump, args=(upstream, client, down), daemon=True).start()
        self._pump(client, upstream, up)

    def _pump(self, src: socket.socket, dst: socket.socket, watch: Watch) -> None:
        try:
            while data := src.recv(65536):
                data, cut = watch(data)
                if data:
                    dst.sendall(data)
                if cut:
                    self.cut()
                    return
        except OSError:
            pass
        finally:
            for s in (src, dst):
                if not (self._stop.is_set() and s in self._clients):  # a cut client's socket is closed by close()
                    with contextlib.suppress(OSError):
                        s.close()

    def close(self) -> None:
        self.cut()
        self._thread.join(2)
        with self._lock:
            for s in self._clients:
                with contextlib.suppress(OSError):
                    s.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KafkaResponseCut(TcpProxy):
    """Forwards a Kafka broker until it has sent one response of at least ``min_bytes`` (a fetch
    carrying that much of the records); holds back anything after it, and when the client next
    sends on that connection (it has taken the response in), cuts every connection and calls
    ``on_cut`` (kill the broker). The client holds that response and nothing after it.

    Kafka responses are framed by a 4-byte big-endian size, so the proxy can tell where one ends.
    The cut waits for the client's next request because a client that reads a response together
    with the end of the stream may drop it (kafka-python 3.0 does)."""

    def __init__(self, listen_port: int, target_port: int, *, min_bytes: int, on_cut: Callable[[], object]) -> None:
        self.min_bytes, self.on_cut = min_bytes, on_cut
        self.cut_after: int | None = None  # the size of the response the line was cut after
        super().__init__(listen_port, target_port)

    def watch(self) -> tuple[Watch, Watch]:
        header, state = bytearray(), {"size": 0, "left": 0, "held": False}

        def down(data: bytes) -> tuple[bytes, bool]:
            if state["held"]:
                return b"", False
            i = 0
            while i < len(data):
                if state["left"] == 0:
                    take = min(4 - len(header), len(data) - i)
                    header.extend(data[i:i + take])
                    i += take
                    if len(header) == 4:
                        state["size"] = state["left"] = int.from_bytes(header, "big")
                        header.clear()
                    continue
                take = min(state["left"], len(data) - i)
                i += take
                state["left"] -= take
                if state["left"] == 0 and state["size"] >= self.min_bytes:
                    self.cut_after, state["held"] = state["size"], True
                    return data[:i], False
            return data, False

        def up(data: bytes) -> tuple[bytes, bool]:
            return (b"", True) if state["held"] else (data, False)

        return down, up

    def cut(self) -> None:
        first = self.cut_after is not None and not self._stop.is_set()
        super().cut()  # first: a connection the broker drops when it is killed must not be closed under its client
        if first:
            self.on_cut()
