"""Tiny traffic tools run inside test namespaces with ``ip netns exec`` (stdlib only).

echo.py tcp-server NAME PORT READYFILE     answer every connection with NAME, then close
echo.py udp-server NAME PORT READYFILE     answer every datagram with NAME
echo.py tcp-client HOST PORT COUNT         COUNT connections; print one answer per line
                                           ("REFUSED"/"TIMEOUT" on failure)
echo.py udp-client HOST PORT SRCPORT       one datagram from a fixed source port; print the answer
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path


def tcp_server(name: str, port: int, ready: str) -> None:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(128)
    Path(ready).write_text("ok")
    while True:
        c, _ = s.accept()
        try:
            c.sendall(name.encode())
        except OSError:
            pass
        c.close()


def udp_server(name: str, port: int, ready: str) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    Path(ready).write_text("ok")
    while True:
        _, addr = s.recvfrom(2048)
        s.sendto(name.encode(), addr)


def tcp_client(host: str, port: int, count: int) -> None:
    for _ in range(count):
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect((host, port))
            data = b""
            while chunk := s.recv(256):
                data += chunk
            print(data.decode() or "EMPTY", flush=True)
        except ConnectionRefusedError:
            print("REFUSED", flush=True)
        except OSError as exc:
            print(f"TIMEOUT {exc}", flush=True)
        finally:
            s.close()


def udp_client(host: str, port: int, src: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", src))
    s.settimeout(1)
    s.sendto(b"hi", (host, port))
    try:
        print(s.recv(256).decode())
    except OSError:
        print("TIMEOUT")


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "tcp-server":
        tcp_server(args[0], int(args[1]), args[2])
    elif mode == "udp-server":
        udp_server(args[0], int(args[1]), args[2])
    elif mode == "tcp-client":
        tcp_client(args[0], int(args[1]), int(args[2]))
    elif mode == "udp-client":
        udp_client(args[0], int(args[1]), int(args[2]))
