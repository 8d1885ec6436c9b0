"""fetch(): copy from the mirror, verify sha256, never leave partial files, fail fast and helpfully offline."""

import hashlib
import socket
import time
import urllib.error

import pytest

import tinylm.download as download
from tinylm.download import DownloadError, RemoteFile, fetch

CONTENT = b"To be, or not to be, that is the question:\n" * 100
UNRESOLVABLE = "https://nonexistent.invalid/x"


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A mirror folder holding sub/file.txt, with $TINYLM_DATA_MIRROR pointing at it."""
    folder = tmp_path / "mirror"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "file.txt").write_bytes(CONTENT)
    monkeypatch.setenv("TINYLM_DATA_MIRROR", str(folder))
    return folder


@pytest.fixture
def source():
    return RemoteFile(url=UNRESOLVABLE, sha256=hashlib.sha256(CONTENT).hexdigest(), mirror_path="sub/file.txt")


def test_fetch_copies_the_file_from_the_mirror(mirror, source, tmp_path):
    dest = tmp_path / "data" / "nested" / "file.txt"
    assert fetch(source, dest) == dest
    assert dest.read_bytes() == CONTENT
    assert [p.name for p in dest.parent.iterdir()] == ["file.txt"]  # no temporary files left


def test_corrupt_mirror_copy_is_rejected_and_discarded(mirror, source, tmp_path):
    (mirror / "sub" / "file.txt").write_bytes(CONTENT[:-1] + b"?")
    dest = tmp_path / "data" / "file.txt"
    with pytest.raises(DownloadError, match="sha256"):
        fetch(source, dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_existing_correct_file_is_not_fetched_again(mirror, source, tmp_path):
    dest = tmp_path / "file.txt"
    dest.write_bytes(CONTENT)
    before = dest.stat().st_mtime_ns
    (mirror / "sub" / "file.txt").unlink()  # consulting the mirror now would fail
    assert fetch(source, dest) == dest
    assert dest.stat().st_mtime_ns == before
    assert dest.read_bytes() == CONTENT


def test_existing_wrong_file_is_replaced(mirror, source, tmp_path):
    dest = tmp_path / "file.txt"
    dest.write_bytes(b"stale half download")
    fetch(source, dest)
    assert dest.read_bytes() == CONTENT


def test_mirror_without_the_file_names_it(mirror, tmp_path):
    missing = RemoteFile(url=UNRESOLVABLE, sha256="0" * 64, mirror_path="other/missing.txt")
    with pytest.raises(DownloadError, match="other/missing.txt"):
        fetch(missing, tmp_path / "missing.txt")


def test_mirror_variable_naming_a_missing_folder_is_an_error(monkeypatch, source, tmp_path):
    monkeypatch.setenv("TINYLM_DATA_MIRROR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="TINYLM_DATA_MIRROR"):
        fetch(source, tmp_path / "file.txt")


def test_offline_without_mirror_fails_quickly_and_says_how_to_fix_it(monkeypatch, source, tmp_path):
    monkeypatch.delenv("TINYLM_DATA_MIRROR", raising=False)
    dest = tmp_path / "data" / "file.txt"
    start = time.monotonic()
    with pytest.raises(DownloadError, match="TINYLM_DATA_MIRROR"):
        fetch(source, dest)
    assert time.monotonic() - start < 30  # a guard against retry loops, not a speed test
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_transient_errors_are_retried_with_backoff(monkeypatch, source, tmp_path):
    monkeypatch.delenv("TINYLM_DATA_MIRROR", raising=False)
    sleeps, calls = [], []

    def flaky_download(url, out, timeout):
        calls.append(url)
        out.write(CONTENT[:10])  # a partial write before the connection drops
        if len(calls) < 3:
            raise urllib.error.URLError(ConnectionResetError("connection reset"))
        out.write(CONTENT[10:])

    monkeypatch.setattr(download, "_download", flaky_download)
    monkeypatch.setattr(download.time, "sleep", sleeps.append)
    dest = tmp_path / "file.txt"
    fetch(source, dest, attempts=3)
    assert len(calls) == 3
    assert sleeps == [1, 2]
    assert dest.read_bytes() == CONTENT  # the partial attempts did not leak into the result
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


@pytest.mark.parametrize(
    "error, retried",
    [
        (urllib.error.HTTPError(UNRESOLVABLE, 404, "Not Found", {}, None), False),
        (urllib.error.HTTPError(UNRESOLVABLE, 503, "Unavailable", {}, None), True),
        (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), False),
        (TimeoutError("timed out"), True),
    ],
)
def test_only_worthwhile_errors_are_retried(monkeypatch, source, tmp_path, error, retried):
    monkeypatch.delenv("TINYLM_DATA_MIRROR", raising=False)
    calls = []

    def failing_download(url, out, timeout):
        calls.append(url)
        raise error

    monkeypatch.setattr(download, "_download", failing_download)
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    with pytest.raises(DownloadError, match="TINYLM_DATA_MIRROR"):
        fetch(source, tmp_path / "file.txt", attempts=3)
    assert len(calls) == (3 if retried else 1)


def test_reachable_tells_a_listening_port_from_a_closed_one_and_an_unknown_host():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert download.reachable("127.0.0.1", port, timeout=2.0)
    assert not download.reachable("127.0.0.1", port, timeout=2.0)  # closed now: connection refused
    assert not download.reachable("nonexistent.invalid", timeout=2.0)


def test_a_file_the_mirror_does_not_carry_is_downloaded_even_with_the_mirror_set(mirror, tmp_path):
    published = tmp_path / "published" / "weights.bin"  # a file:// address stands in for the download host
    published.parent.mkdir()
    published.write_bytes(CONTENT * 3)
    source = RemoteFile(url=published.as_uri(), sha256=hashlib.sha256(CONTENT * 3).hexdigest(), mirror_path=None)
    dest = tmp_path / "data" / "weights.bin"
    assert fetch(source, dest) == dest and dest.read_bytes() == CONTENT * 3
    wrong = RemoteFile(url=published.as_uri(), sha256="0" * 64, mirror_path=None)
    with pytest.raises(DownloadError, match="sent other bytes than expected"):
        fetch(wrong, tmp_path / "data" / "other.bin")
    assert not (tmp_path / "data" / "other.bin").exists()


def test_offline_a_file_the_mirror_does_not_carry_fails_quickly_saying_it_needs_the_network(mirror, tmp_path):
    source = RemoteFile(url=UNRESOLVABLE, sha256=hashlib.sha256(CONTENT).hexdigest(), mirror_path=None)
    start = time.monotonic()
    with pytest.raises(DownloadError, match="could not download .* It needs the network") as error:
        fetch(source, tmp_path / "data" / "file.txt")
    assert "TINYLM_DATA_MIRROR" not in str(error.value)  # the mirror cannot help with this file
    assert time.monotonic() - start < 30  # a guard against retry loops, not a speed test
