"""A Hugging Face hub on localhost for tests: serves ``/{repo_id}/resolve/{revision}/{filename}``
(HEAD and GET, with the headers huggingface_hub reads: X-Repo-Commit, ETag, Content-Length),
404 for anything else; the files lie below a folder as <org>/<name>/<revision>/<file>."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _handler(root: Path, requests: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _file(self) -> tuple[Path, str] | None:
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) != 5 or parts[2] != "resolve":
                return None
            org, name, _, revision, filename = parts
            path = root / org / name / revision / filename
            return (path, revision) if path.is_file() else None

        def _answer(self, body: bool) -> None:
            requests.append(f"{self.command} {self.path}")
            found = self._file()
            if found is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, revision = found
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("X-Repo-Commit", revision)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
            self._answer(body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(body=True)

        def log_message(self, *args) -> None:
            pass

    return Handler


@contextmanager
def serve(root: Path) -> Iterator[tuple[str, list[str]]]:
    """The hub's endpoint (http://127.0.0.1:<port>) and the requests it got, while the block runs."""
    requests: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(root, requests))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def publish(root: Path, repo_id: str, revision: str, encoder_name: str) -> dict:
    """Put config.json and a model.safetensors of ``encoder_name``'s smp encoder, with random
    weights, where :func:`serve` finds them; returns the state dict."""
    import segmentation_models_pytorch as smp
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(1234)
    encoder = smp.encoders.get_encoder(encoder_name, weights=None)
    state = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in encoder.state_dict().items()
    }
    folder = root / repo_id / revision
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
    (folder / "config.json").write_text('{"fake": true}\n', encoding="utf-8")
    return state
