"""Whether a server can be reached, asked before any download so that an offline machine fails
within seconds."""

from __future__ import annotations

import socket
import threading
import urllib.parse

import requests


def unreachable_reason(url: str, timeout: float = 5.0) -> str | None:
    """Why the server of an http(s) ``url``, or the proxy configured for it, cannot be reached;
    None when a TCP connection to it opens within ``timeout`` seconds (it is closed at once).

    Name resolution runs in a daemon thread so that a resolver which never answers is bounded by
    ``timeout`` as well (``getaddrinfo`` itself has no timeout). Downloads (:func:`segpipe.data.download.fetch`) and
    pretrained weights (:mod:`segpipe.models.build`) ask this first, so an offline machine fails or
    falls back to a local cache within seconds instead of retrying for minutes.
    """
    proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    if proxy and "://" not in proxy:
        proxy = f"http://{proxy}"
    target = urllib.parse.urlparse(proxy or url)
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    what = f"{host}:{port}" + (" (proxy)" if proxy else "")

    result: list[list[tuple] | BaseException] = []

    def resolve() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            result.append(exc)

    resolver = threading.Thread(target=resolve, daemon=True, name=f"resolve {host}")
    resolver.start()
    resolver.join(timeout)
    if not result:
        return f"cannot reach {what} (name lookup timed out)"
    if isinstance(result[0], BaseException):
        return f"cannot reach {what} ({result[0]})"

    errors = []
    for family, type_, proto, _, address in result[0]:
        try:
            with socket.socket(family, type_, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
            return None
        except OSError as exc:
            errors.append(f"{address[0]}: {exc}")
    return f"cannot reach {what} ({'; '.join(errors)})"
