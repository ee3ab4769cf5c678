"""Download and unpack datasets: resumable, checksum-verified, fail-fast offline, safe to extract.

The pipeline's ``download`` rule calls :func:`download_dataset`. Every file goes through
:func:`fetch`, which keeps partial data in ``<dest>.part`` and resumes it with an HTTP ``Range``
request, so an interrupted multi-hundred-megabyte transfer is never started over. A file only
appears at ``dest`` once its checksum has been verified; a file that fails verification is moved
to ``<dest>.corrupt`` for inspection and never used. Archives are checked member by member before
anything is extracted (:func:`safe_extract`).

``file://`` URLs take the same path through :func:`fetch` and :func:`download_dataset`, which is
how the offline demo (archives made by :mod:`segpipe.data.synthetic`) exercises this module.
"""

from __future__ import annotations

import logging
import math
import os
import tarfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO, Literal

import requests
import urllib3

from segpipe.io import atomic_copy, atomic_dir
from segpipe.logs import UserError, progress
from segpipe.network import unreachable_reason

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024  # one progress step per MiB

OXFORD_PETS_RESOURCES: list[dict[str, str]] = [
    {
        "filename": "images.tar.gz",
        "url": "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
        "known_hash": "md5:5c4f3ee8e5d25df40f4fd59a7f44e54c",
    },
    {
        "filename": "annotations.tar.gz",
        "url": "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",
        "known_hash": "md5:95a8c909bbe2e81eed6a22bccdf3f68f",
    },
]
"""The Oxford-IIIT Pet archives with their published checksums (the ones torchvision uses)."""


class DownloadError(UserError, RuntimeError):
    """A file could not be downloaded, or what was downloaded is not the expected file: the
    rule's log ends with its message, one line, no traceback."""


class UnsafeArchiveError(DownloadError):
    """An archive holds a member that could write outside its target or create a special file."""


class _RetryableError(Exception):
    """One transfer attempt failed in a way that another attempt may fix."""


_TRANSIENT_ERRORS = (
    requests.ConnectionError,  # while connecting or sending the request
    requests.Timeout,
    urllib3.exceptions.ProtocolError,  # while reading the body, e.g. it ended early
    urllib3.exceptions.ReadTimeoutError,
)


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    known_hash: str | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    connect_timeout: float = 5.0,
    backoff: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``; only a verified file ever lands there.

    ``known_hash`` is ``"<alg>:<hex>"`` (``md5``, ``sha256``, ... as in pooch; a bare hex digest
    means sha256). If ``dest`` already matches it, nothing is downloaded.

    http(s): the data is streamed into ``<dest>.part``; a failed attempt (connection error,
    timeout, truncated body, server error) is retried up to ``retries`` more times after
    ``backoff * 2**i`` seconds, each time resuming from the end of ``<dest>.part`` with a
    ``Range`` header. A ``.part`` left by an earlier, interrupted call is resumed the same way.
    Before any transfer the host (or the configured proxy) is probed with a TCP connection of at
    most ``connect_timeout`` seconds, so an offline machine fails within seconds, not retries.
    ``timeout`` bounds each wait for data from the server.

    ``file://``: the file is copied.

    Raises :class:`DownloadError` if the server cannot be reached or keeps failing, or if the
    checksum does not match (the bad file is then kept at ``<dest>.corrupt``).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if known_hash is None:
            logger.info("%s already exists (no checksum to verify): not downloading", dest)
            return dest
        if _hash_matches(dest, known_hash):
            logger.info("%s already exists and matches %s: not downloading", dest, known_hash)
            return dest
        corrupt = _corrupt_path(dest)
        logger.warning(
            "%s exists but does not match %s: moved it to %s, downloading again",
            dest,
            known_hash,
            corrupt,
        )
        os.replace(dest, corrupt)

    scheme = urllib.parse.urlparse(url).scheme
    if scheme == "file":
        _copy_file_url(url, dest, known_hash)
    elif scheme in ("http", "https"):
        _check_reachable(url, dest, connect_timeout)
        part = dest.parent / (dest.name + ".part")
        _download_http(
            url, part, retries=retries, timeout=(connect_timeout, timeout), backoff=backoff
        )
        _verify(part, url, known_hash, dest)
        os.replace(part, dest)
    else:
        raise DownloadError(f"unsupported URL scheme {scheme!r} in {url}")
    logger.info("downloaded %s -> %s", url, dest)
    return dest


def _copy_file_url(url: str, dest: Path, known_hash: str | None) -> None:
    """Copy the local file named by a ``file://`` URL to ``dest`` atomically, verifying it."""
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise DownloadError(f"file URL with a remote host is not supported: {url}")
    source = Path(urllib.request.url2pathname(parsed.path))
    if not source.is_file():
        raise DownloadError(f"{url}: no such file {source}")
    logger.info("copying %s -> %s", source, dest)
    with atomic_copy(source, dest) as tmp:
        _verify(tmp, url, known_hash, dest)


def _check_reachable(url: str, dest: Path, connect_timeout: float) -> None:
    """Raise :class:`DownloadError` quickly when the server or proxy for ``url`` cannot be
    reached (see :func:`unreachable_reason`)."""
    reason = unreachable_reason(url, connect_timeout)
    if reason:
        raise DownloadError(f"{reason}: no network? Download {url} by hand and put it at {dest}")


def _check_missing_reachable(resources: list[Mapping[str, str]], cache_dir: Path) -> None:
    """Raise one :class:`DownloadError` naming every archive of ``resources`` missing from
    ``cache_dir`` when the server (or proxy) of one of them cannot be reached."""
    missing = [r for r in resources if not (cache_dir / r["filename"]).exists()]
    reasons: dict[str, str | None] = {}
    for resource in missing:
        url = resource["url"]
        if urllib.parse.urlparse(url).scheme in ("http", "https"):
            server = urllib.parse.urlparse(url).netloc
            if server not in reasons:
                reasons[server] = unreachable_reason(url)
    unreachable = [reason for reason in reasons.values() if reason]
    if unreachable:
        where = "; ".join(f"{cache_dir / r['filename']} (from {r['url']})" for r in missing)
        raise DownloadError(
            f"{'; '.join(unreachable)}: no network? Download the {len(missing)} missing "
            f"archive(s) by hand and put them at: {where}"
        )


def _download_http(
    url: str, part: Path, *, retries: int, timeout: tuple[float, float], backoff: float
) -> None:
    """Complete ``part`` from ``url``, resuming after each failed attempt; see :func:`fetch`."""
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, timeout)
            return
        except _RetryableError as exc:
            if attempt == retries:
                raise DownloadError(
                    f"downloading {url} failed after {retries + 1} attempts: {exc}; the partial "
                    f"file {part} is kept and will be resumed by the next call"
                ) from exc
            delay = backoff * 2**attempt
            logger.warning(
                "attempt %d/%d for %s failed (%s); resuming in %.0f s",
                attempt + 1,
                retries + 1,
                url,
                exc,
                delay,
            )
            time.sleep(delay)


def _transfer(url: str, part: Path, timeout: tuple[float, float]) -> None:
    """One attempt: append the rest of ``url`` to ``part``, or raise :class:`_RetryableError`."""
    offset = part.stat().st_size if part.exists() else 0
    # Byte offsets must refer to the file itself, not to a compressed transfer encoding of it.
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
            mode = _open_mode(url, part, offset, response)
            if mode is None:
                return
            length = response.headers.get("Content-Length")
            steps = math.ceil(int(length) / CHUNK_SIZE) if length is not None else None
            desc = f"{part.name.removesuffix('.part')} (MiB)"
            with open(part, mode) as out:
                for _ in progress(
                    _write_body(response, out), desc=desc, total=steps, logger=logger
                ):
                    pass
    except _TRANSIENT_ERRORS as exc:
        raise _RetryableError(str(exc)) from exc


def _write_body(response: requests.Response, out: BinaryIO) -> Iterator[None]:
    """Write ``response``'s body to ``out`` as it arrives; yield once per MiB (for progress).

    Reads with ``read1`` so that every byte received is on disk when the connection breaks
    (a buffered ``read`` of a whole chunk would drop a partial one), ready to be resumed.
    urllib3 raises ``ProtocolError`` if the body ends before its ``Content-Length``.
    """
    written = 0
    while data := response.raw.read1(CHUNK_SIZE, decode_content=False):
        out.write(data)
        done_before = written // CHUNK_SIZE
        written += len(data)
        for _ in range(written // CHUNK_SIZE - done_before):
            yield
    if written % CHUNK_SIZE:
        yield


def _open_mode(
    url: str, part: Path, offset: int, response: requests.Response
) -> Literal["ab", "wb"] | None:
    """How to write ``response``'s body to ``part``: ``"ab"`` (resume), ``"wb"`` or None (done).

    Raises :class:`DownloadError` on client errors and :class:`_RetryableError` on server errors
    or a resume the server got wrong (``part`` is then dropped so the next attempt starts over).
    """
    status = response.status_code
    if status == 416:  # nothing to send after `offset`: complete, or larger than the file
        if _content_range_total(response.headers.get("Content-Range", "")) == offset:
            logger.info("%s: %s is already complete", url, part)
            return None
        part.unlink()
        raise _RetryableError(f"server cannot resume at byte {offset}; starting over")
    if status >= 500:
        raise _RetryableError(f"HTTP {status} {response.reason}")
    if status >= 400:
        raise DownloadError(f"{url}: HTTP {status} {response.reason}")
    if status == 206:
        start = _content_range_start(response.headers.get("Content-Range", ""))
        if start != offset:
            part.unlink()
            raise _RetryableError(f"server resumed at byte {start}, not {offset}; starting over")
        logger.info("%s: resuming at byte %d", url, offset)
        return "ab"
    if offset:
        logger.info("%s: server ignored the Range request; starting over", url)
    return "wb"


def _content_range_start(value: str) -> int | None:
    """First byte of a ``Content-Range: bytes <start>-<end>/<total>`` header, or None."""
    try:
        return int(value.removeprefix("bytes ").split("-", 1)[0])
    except ValueError:
        return None


def _content_range_total(value: str) -> int | None:
    """Total size from a ``Content-Range: bytes */<total>`` header, or None."""
    try:
        return int(value.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return None


def _split_hash(known_hash: str) -> tuple[str, str]:
    """``"md5:abc"`` -> ``("md5", "abc")``; a bare digest is sha256, as in pooch."""
    alg, _, digest = known_hash.rpartition(":")
    return (alg or "sha256").lower(), digest.lower()


def _file_hash(path: Path, alg: str) -> str:
    """Hex digest of ``path`` as pooch computes it. pooch is imported here, not with the module:
    the Snakemake process that builds the DAG imports this module for its resource list only."""
    import pooch

    return pooch.file_hash(str(path), alg=alg)


def _hash_matches(path: Path, known_hash: str) -> bool:
    alg, digest = _split_hash(known_hash)
    return _file_hash(path, alg) == digest


def _corrupt_path(dest: Path) -> Path:
    return dest.parent / (dest.name + ".corrupt")


def _verify(path: Path, url: str, known_hash: str | None, dest: Path) -> None:
    """Check ``path`` (the download meant for ``dest``) against ``known_hash``.

    Without a hash the file's sha256 is logged so it can be pinned. On a mismatch the file is
    moved to ``<dest>.corrupt`` and :class:`DownloadError` is raised.
    """
    if known_hash is None:
        logger.info("%s: no known hash given; sha256:%s", url, _file_hash(path, "sha256"))
        return
    alg, digest = _split_hash(known_hash)
    actual = _file_hash(path, alg)
    if actual == digest:
        logger.info("%s: checksum OK (%s)", url, known_hash)
        return
    corrupt = _corrupt_path(dest)
    os.replace(path, corrupt)
    raise DownloadError(
        f"checksum mismatch for {url}: expected {alg}:{digest}, got {alg}:{actual}. The file was "
        f"kept at {corrupt} for inspection and will not be used; run again to download it afresh."
    )


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> None:
    """Extract the tar archive ``archive`` (optionally compressed) into the directory ``target``.

    Every member is checked before anything is written: links (symbolic or hard), devices,
    FIFOs, absolute paths and paths that would end up outside ``target`` (``..``, or through a
    symlink already in ``target``) raise :class:`UnsafeArchiveError`. Extraction then also uses
    tarfile's ``"data"`` filter. Existing files in ``target`` are overwritten.
    """
    archive = Path(archive)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            problem = _member_problem(member, root)
            if problem:
                raise UnsafeArchiveError(f"{archive}: refusing member {member.name!r}: {problem}")
        tar.extractall(root, members=members, filter="data")


def _member_problem(member: tarfile.TarInfo, root: Path) -> str | None:
    """Why ``member`` must not be extracted into ``root``, or None if it is a safe file or dir."""
    if member.issym():
        return f"symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"hard link to {member.linkname!r}"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO"
    if not (member.isfile() or member.isdir()):
        return "not a regular file or directory"
    if member.name.startswith("/") or os.path.isabs(member.name):
        return "absolute path"
    destination = Path(os.path.realpath(root / member.name))
    if destination != root and root not in destination.parents:
        return "path outside the target directory"
    return None


def download_dataset(
    resources: Iterable[Mapping[str, str]],
    out_dir: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike,
    retries: int = 3,
    timeout: float = 30.0,
) -> Path:
    """Fetch every archive in ``resources`` into ``cache_dir`` and unpack them all into ``out_dir``.

    Each resource is a mapping with ``filename``, ``url`` and ``known_hash`` (see
    :data:`OXFORD_PETS_RESOURCES`); every one must be a tar archive. The archives stay in
    ``cache_dir`` (so a re-run downloads nothing) and are extracted together into a temporary
    directory that then replaces ``out_dir`` in one step. Returns ``out_dir``.

    Before any transfer, the servers of the archives not yet in ``cache_dir`` are probed; when
    one cannot be reached, one :class:`DownloadError` names every missing archive and where to
    put a copy downloaded by hand.
    """
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir)
    resources = list(resources)
    _check_missing_reachable(resources, cache_dir)
    archives = [
        fetch(
            resource["url"],
            cache_dir / resource["filename"],
            known_hash=resource.get("known_hash"),
            retries=retries,
            timeout=timeout,
        )
        for resource in resources
    ]
    with atomic_dir(out_dir) as tmp:
        for archive in archives:
            logger.info("extracting %s", archive)
            safe_extract(archive, tmp)
    logger.info("dataset ready in %s", out_dir)
    return out_dir
