"""`python -m tinylm.prepare mirror --out DIR`: the offline data mirror the tests read, built from the canonical URLs.

Offline, each download is served from a copy by a file:// URL (urllib reads those as it reads https://): the
course's own mirror holds every file, or the source a file is made from, except FineWeb-Edu's CSV, which is
rebuilt here from the sample's 120 documents and one more, so that the conversion must give the sample back to the
byte for its pinned sha256 to match.
"""

import csv
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.preloaded import run_module
from tinylm.download import DownloadError, RemoteFile, mirror_dir
from tinylm.prepare.mirror import FINEWEB_EDU_CSV, HELLASWAG_TEXT, MANIFEST, MIRROR_FILES, build_mirror

COURSE_MIRROR = mirror_dir()
pytestmark = pytest.mark.skipif(COURSE_MIRROR is None, reason="serves the course's mirror ($TINYLM_DATA_MIRROR)")


def served(path: Path) -> RemoteFile:
    return RemoteFile(url=path.as_uri(), sha256=hashlib.sha256(path.read_bytes()).hexdigest(), mirror_path=None)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, RemoteFile]:
    """Each mirror file's download, served offline: the mirror path -> its source at a file:// URL."""
    folder = tmp_path_factory.mktemp("served")
    documents = (COURSE_MIRROR / "fineweb_edu" / "fineweb_edu_120docs.jsonl").read_text(encoding="utf-8")
    table = folder / "training_data.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        rows = csv.writer(f)
        rows.writerow(["text", "score"])
        rows.writerows([json.loads(line)["text"], 3] for line in documents.split("\n") if line)
        rows.writerow(["a 121st document, which the sample leaves out", 2])
    where = {HELLASWAG_TEXT.url: COURSE_MIRROR / "hellaswag" / "hellaswag_val_full.txt.bz2", FINEWEB_EDU_CSV.url: table}
    return {file.path: served(where.get(file.source.url, COURSE_MIRROR / str(file.source.mirror_path)))
            for file in MIRROR_FILES}


def offline(sources: dict[str, RemoteFile]) -> tuple:
    return tuple(dataclasses.replace(file, source=sources[file.path]) for file in MIRROR_FILES)


def test_the_mirror_holds_every_file_the_course_mirror_serves_to_the_tests_byte_for_byte():
    """The files the tests read from the course's mirror are the ones the command builds, with the same digests."""
    for file in MIRROR_FILES:
        assert hashlib.sha256((COURSE_MIRROR / file.path).read_bytes()).hexdigest() == file.sha256, file.path
    for source in (HELLASWAG_TEXT, FINEWEB_EDU_CSV):
        assert source.url.startswith("https://raw.githubusercontent.com/") and re.search(r"/[0-9a-f]{40}/", source.url)


def test_a_mirror_built_offline_is_the_course_mirror_and_serves_the_tests(sources, tmp_path):
    out = tmp_path / "shared" / "data"
    said = []
    assert build_mirror(out, offline(sources), say=said.append) == out
    built = sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())
    assert built == sorted([file.path for file in MIRROR_FILES] + [MANIFEST])
    for file in MIRROR_FILES:
        assert (out / file.path).read_bytes() == (COURSE_MIRROR / file.path).read_bytes(), file.path
    manifest = (out / MANIFEST).read_text(encoding="utf-8")
    for file in MIRROR_FILES:
        assert re.search(rf"\| `{re.escape(file.path)}` \| {re.escape(sources[file.path].url)} .*\| {file.sha256} \|",
                         manifest), file.path
    assert said[-1] == f"the mirror is ready: export TINYLM_DATA_MIRROR={out}"
    again = []
    build_mirror(out, offline(sources), say=again.append)  # a second build keeps what is there
    assert all(line.endswith(": already there") for line in again[:-1])
    # what the tests do with it: GPT-2's BPE files through tiktoken's cache, HellaSwag's substitute, Shakespeare
    env = {**os.environ, "TINYLM_DATA_MIRROR": str(out), "TIKTOKEN_CACHE_DIR": str(out / "tiktoken_cache"),
           "TINYLM_DATA_DIR": str(tmp_path / "data")}
    probe = ("from tinylm.tokenizers.gpt2 import BPETokenizer; from tinylm.eval.hellaswag import locate_val; "
             "from tinylm.train.recipes import prepare_shakespeare_char; "
             "print(BPETokenizer('gpt2').encode('Hello, I am a language model,'), locate_val().path.name, "
             "prepare_shakespeare_char().tokenizer.vocab_size)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.stdout == "[15496, 11, 314, 716, 257, 3303, 2746, 11] hellaswag_val_klosax.jsonl 65\n", result.stderr


def test_a_corrupted_download_or_made_file_is_refused_and_nothing_half_written_stays(sources, tmp_path):
    damaged = tmp_path / "input.txt"
    damaged.write_bytes((COURSE_MIRROR / "tinyshakespeare" / "input.txt").read_bytes() + b"one line more\n")
    corrupted = {**sources, "tinyshakespeare/input.txt": dataclasses.replace(served(damaged), sha256=sources[
        "tinyshakespeare/input.txt"].sha256)}
    out = tmp_path / "mirror"
    with pytest.raises(DownloadError, match=r"^input.txt arrived with sha256 [0-9a-f]{64}, expected 86c4e6aa"):
        build_mirror(out, offline(corrupted), say=lambda line: None)
    assert [path for path in out.rglob("*") if path.is_file()] == []
    changed = tuple(dataclasses.replace(file, derive=lambda data, derive=file.derive: derive(data) + b"\n")
                    if file.derive else file for file in offline(sources))
    with pytest.raises(DownloadError, match=r"^hellaswag/hellaswag_val_klosax.jsonl made from \S+ has sha256 "
                                            r"[0-9a-f]{64}, expected 7f07c53c\w+ \(nothing was written\)"):
        build_mirror(out, changed, say=lambda line: None)
    assert not (out / "hellaswag").exists() and not list(out.rglob("*.tmp")) and not (out / MANIFEST).exists()


def test_the_command_builds_it_and_a_corrupted_file_is_one_line_that_leaves_no_file(sources, tmp_path):
    """`python -m tinylm.prepare mirror --out DIR` as a user runs it, its downloads served as above."""
    def run(served_sources, out):
        urls = json.dumps({path: [source.url, source.sha256] for path, source in served_sources.items()})
        prelude = ("import dataclasses, json, tinylm.prepare.mirror as m\n"
                   f"served = json.loads({urls!r})\n"
                   "m.MIRROR_FILES = tuple(dataclasses.replace(f, source=dataclasses.replace(f.source, "
                   "url=served[f.path][0], sha256=served[f.path][1])) for f in m.MIRROR_FILES)")
        return run_module("tinylm.prepare", ["mirror", "--out", str(out)], cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300, prelude=prelude)

    result = run(sources, tmp_path / "mirror")
    assert result.returncode == 0 and "error" not in result.stderr, result.stderr  # stderr: download progress bars
    assert (tmp_path / "mirror" / MANIFEST).is_file() and len(result.stdout.splitlines()) == len(MIRROR_FILES) + 1
    damaged = tmp_path / "encoder.json"
    damaged.write_bytes(b"{}")
    result = run({**sources, "gpt2/encoder.json": dataclasses.replace(served(damaged), sha256=sources[
        "gpt2/encoder.json"].sha256)}, tmp_path / "other")
    said = [line for line in result.stderr.splitlines() if line.strip() and "%|" not in line]  # no progress bars
    assert result.returncode == 1 and len(said) == 1, result.stderr
    assert re.fullmatch(r"error: encoder.json arrived with sha256 [0-9a-f]{64}, expected 196139668be6\w+ \(the copy "
                        r"was discarded\): .*", said[0])
    assert not (tmp_path / "other" / "gpt2" / "encoder.json").exists() and not list(tmp_path.rglob("*.tmp"))
