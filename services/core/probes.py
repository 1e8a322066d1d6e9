"""Protocol probes: does HOST:PORT answer, and does it speak the protocol we expect?

Each probe returns ``"up"`` (answers in the right protocol), ``"foreign"`` (something
answers but it is not that protocol) or ``"down"`` (nothing listens). The checks are a
few bytes on a raw socket with a short timeout, so they never hang.
"""
from __future__ import annotations

import socket
import struct

PROBE_TIMEOUT_S = 1.5


def _exchange(host: str, port: int, payload: bytes, want: int) -> bytes | None:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S) as sock:
            sock.settimeout(PROBE_TIMEOUT_S)
            sock.sendall(payload)
            data = b""
            while len(data) < want:
                chunk = sock.recv(want - len(data))
                if not chunk:
                    break
                data += chunk
            return data
    except ConnectionRefusedError:
        return None
    except OSError:
        return b""  # something accepted the connection and then misbehaved or stayed silent


def probe_kafka(host: str, port: int) -> str:
    # ApiVersions (api_key 18) v0: header = api_key, api_version, correlation_id, client_id.
    client_id = b"vigil-probe"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    reply = _exchange(host, port, struct.pack(">i", len(body)) + body, 8)
    if reply is None:
        return "down"
    if len(reply) == 8 and struct.unpack(">i", reply[4:8])[0] == 7:
        return "up"
    return "foreign"


def probe_redis(host: str, port: int) -> str:
    reply = _exchange(host, port, b"PING\r\n", 5)
    if reply is None:
        return "down"
    if reply.startswith(b"+PONG") or reply.startswith(b"-NOAU") or reply.startswith(b"-ERR"):
        return "up"
    return "foreign"


def redis_default_open(host: str, port: int) -> bool | None:
    """True when Redis answers an unauthenticated PING: its ``default`` user is on without a
    password (with all rights, unless someone restricted it), which makes per-tenant ACL users moot.
    False when it asks for authentication; None when nothing answers."""
    reply = _exchange(host, port, b"PING\r\n", 5)
    if reply is None:
        return None
    return reply.startswith(b"+PONG")


def probe_postgres(host: str, port: int) -> str:
    # SSLRequest: length 8, code 80877103; a PostgreSQL server answers one byte, 'S' or 'N'.
    reply = _exchange(host, port, struct.pack(">ii", 8, 80877103), 1)
    if reply is None:
        return "down"
    return "up" if reply in (b"S", b"N") else "foreign"


def probe_http(host: str, port: int, path: str = "/healthz") -> str:
    request = f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
    reply = _exchange(host, port, request, 12)
    if reply is None:
        return "down"
    return "up" if reply.startswith(b"HTTP/1.") and reply[9:12] == b"200" else "foreign"
