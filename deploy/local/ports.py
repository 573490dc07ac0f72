"""Free TCP ports on the loopback interface."""

import socket
from contextlib import ExitStack


def free_port() -> int:
    """Return a port that nothing listens on right now (the kernel's pick, so no guessing)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Return `count` distinct free ports.

    The sockets stay bound until all are picked: closing each one first would let the kernel
    hand the same port out twice.
    """
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
