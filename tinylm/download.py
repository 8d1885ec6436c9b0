"""Fetch a data file once, verify it, and never leave a half-written copy behind.

Every file is pinned by its sha256, so a wrong, changed or interrupted copy cannot pass for the real file. It comes
from the offline mirror ($TINYLM_DATA_MIRROR) when one is set, else from its canonical URL; a file the mirror does
not carry (a published model's weights) has `mirror_path=None` and is always downloaded. The tokenizers consult the
mirror too (GPT-2's BPE files), which is why this module sits below every stage.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .errors import MissingFile, TinyLMError
from .paths import atomic_write

MIRROR_ENV = "TINYLM_DATA_MIRROR"


def mirror_dir() -> Path | None:
    """The mirror folder if $TINYLM_DATA_MIRROR is set; an error if it names a missing folder."""
    value = os.environ.get(MIRROR_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise MissingFile(f"{MIRROR_ENV}={value!r} is not a folder; "
                                "point it at the offline data mirror or unset it")
    return path


@dataclass(frozen=True)
class RemoteFile:
    url: str  # canonical download address
    sha256: str  # expected digest of the bytes
    mirror_path: str | None  # where the offline mirror keeps it, relative to $TINYLM_DATA_MIRROR; None: not mirrored


class DownloadError(TinyLMError, RuntimeError):
    pass


def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to host:port opens within `timeout` seconds (no name resolution counts as no): the
    offline check, asked up front, for downloads that other libraries make."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:  # socket.gaierror (offline), ConnectionRefusedError, TimeoutError
        return False


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(source: RemoteFile, dest: str | Path, attempts: int = 3, timeout: float = 15.0) -> Path:
    """`dest`, holding `source`'s bytes: as it is when it already does, else copied from the offline mirror when one
    is set (which must then hold the file), else downloaded from the canonical URL with a progress bar, server
    hiccups and dropped connections retried with backoff. The bytes pass the sha256 check inside an atomic write, so
    a bad copy never replaces `dest`. Offline with no mirror, the first attempt fails on name resolution within
    seconds, with an error that says how to set the mirror where it carries the file."""
    dest = Path(dest)
    if dest.exists() and sha256_of(dest) == source.sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    mirror = mirror_dir() if source.mirror_path is not None else None
    if mirror is not None:
        mirrored = mirror / source.mirror_path
        if not mirrored.is_file():
            raise DownloadError(f"{MIRROR_ENV} is set to {mirror}, but it has no {source.mirror_path}; "
                                f"add the file or unset {MIRROR_ENV} to download {source.url}")

        def copy_from_mirror(out) -> None:
            with open(mirrored, "rb") as src:
                shutil.copyfileobj(src, out)

        _write_verified(dest, source, copy_from_mirror,
                        f"the mirror's {mirrored} is damaged or another version; replace it with a good copy "
                        f"(README, 'Offline mirror'), or unset {MIRROR_ENV} to download {source.url}")
        return dest
    for attempt in range(1, attempts + 1):
        try:
            _write_verified(dest, source, lambda out: _download(source.url, out, timeout),
                            f"{source.url} sent other bytes than expected; try again later, or use the offline mirror "
                            f"({MIRROR_ENV})")
            return dest
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            if attempt == attempts or not _worth_retrying(error):
                reason = getattr(error, "reason", error)
                advice = (f"If this machine is offline, set {MIRROR_ENV} to a folder that holds {source.mirror_path} "
                          "(see README, 'Offline mirror')." if source.mirror_path else "It needs the network.")
                raise DownloadError(f"could not download {source.url} ({reason}). {advice}") from error
            time.sleep(2 ** (attempt - 1))
    raise DownloadError(f"could not download {source.url}")


def _worth_retrying(error: Exception) -> bool:
    """Server hiccups and dropped connections are; no DNS (offline) and client errors (404) are not."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code >= 500 or error.code == 429
    return not isinstance(getattr(error, "reason", None), socket.gaierror)


def _download(url: str, out, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "tinylm"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name, leave=False) as bar:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                bar.update(len(chunk))


class _HashingWriter:
    """A file wrapper that computes the sha256 of what passes through it."""

    def __init__(self, file):
        self.file = file
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.file.write(data)


def _write_verified(dest: Path, source: RemoteFile, write, advice: str) -> None:
    with atomic_write(dest) as out:
        hashing = _HashingWriter(out)
        write(hashing)
        actual = hashing.digest.hexdigest()
        if actual != source.sha256:  # raising inside atomic_write discards the copy
            raise DownloadError(f"{dest.name} arrived with sha256 {actual}, expected {source.sha256} (the copy was "
                                f"discarded): {advice}")
