"""Network reachability probe, so offline runs fail in seconds instead of retrying for minutes."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit


def unreachable_reason(url: str, timeout: float = 5.0) -> str | None:
    """Return why ``url``'s host cannot be reached (DNS or TCP), or None when it can."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot reach {host}:{port} ({exc})"
