"""TLS for tests: a CA and a server certificate made on the spot (trustme), and a TLS-terminating proxy.

Tansu listens in plaintext; the proxy takes TLS on the port Tansu advertises and forwards the
decrypted bytes to Tansu's listener, so that clients talk TLS end to end as to a real TLS broker
(every connection, the bootstrap's and the partition leaders', goes to the advertised port).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.proxy import TcpProxy


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA's certificate: what a client is given with --ssl-cafile / --redis-ca-file
    cert: Path  # the server's certificate chain, for 127.0.0.1 and localhost
    key: Path


def make_tls_files(root: Path) -> TlsFiles:
    root.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(ca=root / "ca.pem", cert=root / "server.pem", key=root / "server.key")
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.cert))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(str(files.cert), append=True)
    server.private_key_pem.write_to_path(str(files.key))
    return files


class TlsProxy(TcpProxy):
    """Accepts TLS on ``listen_port`` and forwards each connection, decrypted, to ``target_port`` (both on 127.0.0.1)."""

    def __init__(self, files: TlsFiles, listen_port: int, target_port: int) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(files.cert), str(files.key))
        self.handshakes_failed = 0
        super().__init__(listen_port, target_port)

    def accepted(self, conn: socket.socket) -> socket.socket | None:
        conn.settimeout(10)
        try:
            return self.ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshakes_failed += 1  # a client that does not trust the certificate hangs up here
            conn.close()
            return None
