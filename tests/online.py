"""Whether PyPI answers: tests that pip-install for real skip without it."""

from __future__ import annotations

import socket


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False
