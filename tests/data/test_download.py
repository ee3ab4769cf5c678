"""segpipe.data.download against a loopback HTTP server (127.0.0.1 only) and local files."""

from __future__ import annotations

import hashlib
import io
import shutil
import socket
import tarfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from segpipe.data.download import (
    DownloadError,
    UnsafeArchiveError,
    download_dataset,
    fetch,
    safe_extract,
)
from segpipe.data.synthetic import make_oxford_like, pack_oxford_archives
from segpipe.logs import UserError

from helpers.repo import copy_workflow, snakemake

PAYLOAD = bytes(range(256)) * 400  # 100 KiB, several reads long
PAYLOAD_HASH = "md5:" + hashlib.md5(PAYLOAD).hexdigest()


class _Server(ThreadingHTTPServer):
    """Serves files from ``root``; records each request's headers; can cut responses short."""

    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.requests: list[dict[str, str]] = []
        self.ranges = True  # honour Range headers (206) or ignore them (200)
        self.cut_after: int | None = None  # send only this many body bytes, then hang up...
        self.cuts_left = 0  # ...for this many responses
        self.errors: list[int] = []  # answer the next requests with these HTTP error statuses

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_port}/{name}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.requests.append(dict(self.headers))
        if self.server.errors:
            self.send_error(self.server.errors.pop(0))
            return
        path = self.server.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        requested = self.headers.get("Range")
        if requested and self.server.ranges:
            start = int(requested.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.cuts_left > 0:
            self.server.cuts_left -= 1
            body = body[: self.server.cut_after]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Talk to 127.0.0.1 (and fail on the unresolvable host) directly, whatever the environment."""
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def server(tmp_path: Path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "data.bin").write_bytes(PAYLOAD)
    httpd = _Server(root)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_http_download_verifies_and_skips_existing(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "data.bin"
    assert fetch(server.url("data.bin"), dest, known_hash=PAYLOAD_HASH) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "cache" / "data.bin.part").exists()
    assert len(server.requests) == 1

    fetch(server.url("data.bin"), dest, known_hash=PAYLOAD_HASH)
    assert len(server.requests) == 1  # already there and verified: no second transfer


def test_sha256_and_bare_digest_hashes(server: _Server, tmp_path: Path) -> None:
    sha256 = hashlib.sha256(PAYLOAD).hexdigest()
    fetch(server.url("data.bin"), tmp_path / "a", known_hash=f"sha256:{sha256}")
    fetch(server.url("data.bin"), tmp_path / "b", known_hash=sha256.upper())
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() == PAYLOAD


def test_file_url_is_copied(tmp_path: Path) -> None:
    source = tmp_path / "dir with space" / "data.bin"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "cache" / "data.bin"
    fetch(source.as_uri(), dest, known_hash=PAYLOAD_HASH)
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["data.bin"]


@pytest.mark.parametrize("scheme", ["http", "file"])
def test_checksum_mismatch_keeps_file_aside(server: _Server, tmp_path: Path, scheme: str) -> None:
    url = server.url("data.bin") if scheme == "http" else (server.root / "data.bin").as_uri()
    dest = tmp_path / "cache" / "data.bin"
    wrong = "md5:" + "0" * 32
    with pytest.raises(DownloadError) as excinfo:
        fetch(url, dest, known_hash=wrong)
    message = str(excinfo.value)
    corrupt = tmp_path / "cache" / "data.bin.corrupt"
    assert url in message and wrong in message and PAYLOAD_HASH in message
    assert str(corrupt) in message
    assert not dest.exists()
    assert corrupt.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["data.bin.corrupt"]


def test_existing_file_with_wrong_content_is_replaced(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"stale")
    fetch(server.url("data.bin"), dest, known_hash=PAYLOAD_HASH)
    assert dest.read_bytes() == PAYLOAD
    assert (tmp_path / "data.bin.corrupt").read_bytes() == b"stale"


def test_interrupted_download_resumes_within_one_call(server: _Server, tmp_path: Path) -> None:
    server.cut_after, server.cuts_left = 30_000, 1
    dest = tmp_path / "data.bin"
    fetch(server.url("data.bin"), dest, known_hash=PAYLOAD_HASH, retries=2, backoff=0)
    assert dest.read_bytes() == PAYLOAD
    assert [r.get("Range") for r in server.requests] == [None, "bytes=30000-"]


def test_interrupted_download_resumes_in_next_call(server: _Server, tmp_path: Path) -> None:
    server.cut_after, server.cuts_left = 30_000, 1
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="will be resumed"):
        fetch(server.url("data.bin"), dest, known_hash=PAYLOAD_HASH, retries=0)
    assert not dest.exists()
    assert (tmp_path / "data.bin.part").read_bytes() == PAYLOAD[:30_000]

    fetch(server.url("data.bin"), dest, known_hash=PAYLOAD_HASH, retries=0)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "data.bin.part").exists()
    assert server.requests[-1]["Range"] == "bytes=30000-"


def test_complete_part_file_is_not_downloaded_again(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    fetch(server.url("data.bin"), tmp_path / "data.bin", known_hash=PAYLOAD_HASH, retries=0)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert server.requests[-1]["Range"] == f"bytes={len(PAYLOAD)}-"


def test_server_without_range_support_restarts_from_zero(server: _Server, tmp_path: Path) -> None:
    server.ranges = False
    (tmp_path / "data.bin.part").write_bytes(b"x" * 1000)  # would corrupt the file if appended to
    fetch(server.url("data.bin"), tmp_path / "data.bin", known_hash=PAYLOAD_HASH, retries=0)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert server.requests[-1]["Range"] == "bytes=1000-"


def test_part_file_larger_than_remote_restarts(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD + b"extra")
    fetch(server.url("data.bin"), tmp_path / "data.bin", known_hash=PAYLOAD_HASH, backoff=0)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert [r.get("Range") for r in server.requests] == [f"bytes={len(PAYLOAD) + 5}-", None]


def test_server_errors_are_retried(server: _Server, tmp_path: Path) -> None:
    server.errors = [503, 500]
    fetch(server.url("data.bin"), tmp_path / "data.bin", known_hash=PAYLOAD_HASH, backoff=0)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert len(server.requests) == 3


def test_missing_file_fails_without_retrying(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="404"):
        fetch(server.url("absent.bin"), tmp_path / "absent.bin", retries=3, backoff=10)
    assert len(server.requests) == 1


def _assert_fails_fast(url: str, where: str, tmp_path: Path) -> None:
    """``fetch`` gives up on ``url`` within 10 s, saying what it could not reach and what to do."""
    dest = tmp_path / "x.tar.gz"
    start = time.monotonic()
    with pytest.raises(DownloadError) as excinfo:
        fetch(url, dest, retries=3, backoff=5)
    assert time.monotonic() - start < 10
    message = str(excinfo.value)
    assert f"cannot reach {where}" in message
    assert "no network?" in message and url in message and str(dest) in message
    assert not dest.exists()


def test_closed_port_fails_fast(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        _assert_fails_fast(f"http://127.0.0.1:{port}/x.tar.gz", f"127.0.0.1:{port}", tmp_path)


def test_unresolvable_host_fails_fast(tmp_path: Path) -> None:
    _assert_fails_fast("http://nonexistent.invalid/x.tar.gz", "nonexistent.invalid:80", tmp_path)


def test_hanging_name_lookup_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hang(*args: object, **kwargs: object) -> list:
        release.wait(30)
        raise socket.gaierror("released")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    start = time.monotonic()
    try:
        with pytest.raises(DownloadError, match="name lookup timed out"):
            fetch("https://example.org/x.tar.gz", tmp_path / "x.tar.gz", connect_timeout=0.5)
        assert time.monotonic() - start < 2
    finally:
        release.set()


def _tar_with(member: tarfile.TarInfo, tmp_path: Path) -> Path:
    """An archive holding a harmless file first, then ``member``."""
    archive = tmp_path / "archive.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        harmless = tarfile.TarInfo("data/ok.txt")
        harmless.size = 2
        tar.addfile(harmless, io.BytesIO(b"ok"))
        tar.addfile(member, io.BytesIO(b"evil") if member.isfile() else None)
    return archive


def _member(name: str, type_: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = type_, linkname
    info.size = 4 if type_ == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    "member, reason",
    [
        (_member("data/link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (_member("data/hard", tarfile.LNKTYPE, "data/ok.txt"), "hard link"),
        (_member("../evil"), "outside the target"),
        (_member("data/../../evil"), "outside the target"),
        (_member("/tmp/evil-absolute"), "absolute path"),
        (_member("data/tty", tarfile.CHRTYPE), "device"),
        (_member("data/disk", tarfile.BLKTYPE), "device"),
        (_member("data/pipe", tarfile.FIFOTYPE), "FIFO"),
    ],
    ids=["symlink", "hardlink", "dotdot", "nested-dotdot", "absolute", "chr", "blk", "fifo"],
)
def test_unsafe_archive_is_refused_before_extracting(
    tmp_path: Path, member: tarfile.TarInfo, reason: str
) -> None:
    archive = _tar_with(member, tmp_path)
    target = tmp_path / "out" / "target"
    with pytest.raises(UnsafeArchiveError, match=reason) as excinfo:
        safe_extract(archive, target)
    assert str(archive) in str(excinfo.value) and repr(member.name) in str(excinfo.value)
    assert list(target.iterdir()) == []  # not even the harmless member
    assert not (tmp_path / "out" / "evil").exists() and not (tmp_path / "evil").exists()
    assert not Path("/tmp/evil-absolute").exists()


def test_archive_cannot_escape_through_existing_symlink(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "escape").symlink_to(tmp_path)
    archive = _tar_with(_member("escape/evil"), tmp_path)
    with pytest.raises(UnsafeArchiveError, match="outside the target"):
        safe_extract(archive, target)
    assert not (tmp_path / "evil").exists()


def test_safe_extract_overwrites_existing_files(tmp_path: Path) -> None:
    target = tmp_path / "target"
    (target / "data").mkdir(parents=True)
    (target / "data" / "ok.txt").write_text("old")
    (target / "keep.txt").write_text("kept")
    safe_extract(_tar_with(_member("data/new.txt"), tmp_path), target)
    assert (target / "data" / "ok.txt").read_text() == "ok"
    assert (target / "data" / "new.txt").read_text() == "evil"
    assert (target / "keep.txt").read_text() == "kept"


@pytest.fixture(scope="module")
def oxford_archives(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Small look-alike archives, as ``pack_oxford_archives`` makes them (file:// URLs)."""
    base = tmp_path_factory.mktemp("oxford")
    make_oxford_like(base / "tree", n_images=8, seed=3)
    return pack_oxford_archives(base / "tree", base / "archives")


def _check_oxford_tree(root: Path) -> None:
    images = sorted(p.stem for p in (root / "images").glob("*.jpg"))
    trimaps = sorted(p.stem for p in (root / "annotations" / "trimaps").glob("*.png"))
    assert len(images) == 8 and images == trimaps
    listed = [
        line.split()[0]
        for name in ("trainval.txt", "test.txt")
        for line in (root / "annotations" / name).read_text().splitlines()
    ]
    assert sorted(listed) == images


def test_download_dataset_over_http(
    server: _Server, tmp_path: Path, oxford_archives: list[dict]
) -> None:
    resources = []
    for resource in oxford_archives:
        shutil.copy(
            urllib.request.url2pathname(urllib.parse.urlparse(resource["url"]).path), server.root
        )
        resources.append({**resource, "url": server.url(resource["filename"])})
    out_dir = tmp_path / "raw" / "oxford-iiit-pet"
    (out_dir / "stale").mkdir(parents=True)  # a previous, partial extraction: replaced as a whole

    assert download_dataset(resources, out_dir, cache_dir=tmp_path / "cache") == out_dir
    _check_oxford_tree(out_dir)
    assert sorted(p.name for p in out_dir.iterdir()) == ["annotations", "images"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "annotations.tar.gz",
        "images.tar.gz",
    ]
    assert sorted(p.name for p in out_dir.parent.iterdir()) == ["oxford-iiit-pet"]  # no temp dirs

    download_dataset(resources, out_dir, cache_dir=tmp_path / "cache")  # cached: no transfer
    assert len(server.requests) == 2
    _check_oxford_tree(out_dir)


def test_download_dataset_from_file_urls(tmp_path: Path, oxford_archives: list[dict]) -> None:
    out_dir = tmp_path / "oxford-iiit-pet"
    download_dataset(oxford_archives, out_dir, cache_dir=tmp_path / "cache")
    _check_oxford_tree(out_dir)


def test_download_dataset_leaves_out_dir_alone_on_failure(
    tmp_path: Path, oxford_archives: list[dict]
) -> None:
    out_dir = tmp_path / "oxford-iiit-pet"
    (out_dir / "images").mkdir(parents=True)
    broken = [oxford_archives[0], {**oxford_archives[1], "known_hash": "md5:" + "0" * 32}]
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_dataset(broken, out_dir, cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in out_dir.iterdir()) == ["images"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "oxford-iiit-pet"]


def _offline_resources(names: list[str]) -> list[dict[str, str]]:
    return [
        {"filename": n, "url": f"http://nonexistent.invalid/{n}", "known_hash": "md5:" + "0" * 32}
        for n in names
    ]


def test_offline_download_names_every_missing_archive(tmp_path: Path) -> None:
    cache = tmp_path / "archives"
    cache.mkdir()
    (cache / "present.tar.gz").write_bytes(b"already here")
    resources = _offline_resources(["images.tar.gz", "present.tar.gz", "annotations.tar.gz"])
    with pytest.raises(DownloadError) as excinfo:
        download_dataset(resources, tmp_path / "dataset", cache_dir=cache)
    message = str(excinfo.value)
    assert isinstance(excinfo.value, UserError)  # one line in the rule's log, no traceback
    assert "\n" not in message and message.count("cannot reach nonexistent.invalid:80") == 1
    for name in ("images.tar.gz", "annotations.tar.gz"):
        assert f"{cache / name} (from http://nonexistent.invalid/{name})" in message
    assert "present.tar.gz" not in message
    assert sorted(p.name for p in cache.iterdir()) == ["present.tar.gz"]


@pytest.mark.slow
def test_offline_pipeline_ends_with_one_message(tmp_path: Path) -> None:
    """The download job of an offline run ends with one line naming both archives: no
    traceback in its log or in what Snakemake prints."""
    work = copy_workflow(tmp_path / "wf")
    resources = _offline_resources(["images.tar.gz", "annotations.tar.gz"])
    (work / "offline.yaml").write_text(yaml.safe_dump({"dataset": {"urls": resources}}))
    proc = snakemake(work, "-c1", "results/download/dataset", "--configfile", "offline.yaml")
    assert proc.returncode != 0
    log = (work / "logs/download/download.log").read_text()
    printed = proc.stdout + proc.stderr
    assert "Traceback" not in printed and "Traceback" not in log, printed
    assert len(log.splitlines()) == 1, log
    for name in ("images.tar.gz", "annotations.tar.gz"):
        assert "put them at: " in log and f"results/download/archives/{name}" in log
