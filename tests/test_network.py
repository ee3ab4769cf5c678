"""Whether a server can be reached: a connection that opens, a refused port, a name that does
not resolve, and a proxy from the environment, each answered within the time-out."""

from __future__ import annotations

import socket

from segpipe.network import unreachable_reason


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_listening_server_is_reachable(monkeypatch) -> None:
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert unreachable_reason(f"http://127.0.0.1:{port}/x.tar.gz", timeout=2) is None


def test_a_refused_port_is_named(monkeypatch) -> None:
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    port = _free_port()
    reason = unreachable_reason(f"http://127.0.0.1:{port}/x", timeout=2)
    assert reason is not None and reason.startswith(f"cannot reach 127.0.0.1:{port} (")


def test_a_name_that_does_not_resolve_is_named(monkeypatch) -> None:
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    reason = unreachable_reason("https://no-such-host.invalid/weights.pth", timeout=2)
    assert reason is not None and reason.startswith("cannot reach no-such-host.invalid:443")


def test_the_proxy_of_the_environment_is_what_is_asked(monkeypatch) -> None:
    port = _free_port()
    monkeypatch.setenv("https_proxy", f"127.0.0.1:{port}")  # no scheme: http:// is meant
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    reason = unreachable_reason("https://example.org/weights.pth", timeout=2)
    assert reason is not None and reason.startswith(f"cannot reach 127.0.0.1:{port} (proxy) (")
