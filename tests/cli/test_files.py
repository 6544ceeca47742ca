"""``labric files ls|upload|download|rm|info`` against the local server, in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labric import Labric
from labric.server import ThreadedServer

from ._support import call, make_tree

UPLOAD_ENTRY_KEYS = {
    "source",
    "name",
    "ok",
    "skipped",
    "file_id",
    "size_bytes",
    "crc32c_hash",
    "error",
    "warnings",
}
DOWNLOAD_ENTRY_KEYS = {"file_id", "ok", "skipped", "path", "error"}
SUMMARY_KEYS = {"files", "ok", "skipped", "failed", "bytes_transferred", "seconds"}
FILE_KEYS = {
    "file_id",
    "original_path",
    "file_name",
    "size_bytes",
    "size_kilobytes",
    "crc32c_hash",
    "content_type",
    "source_type",
    "source_instrument_id",
    "job_execution_id",
    "file_created_at",
}

RUN = {
    "plate_1/read_1.csv": b"well,od\nA1,0.5\n",
    "plate_1/read_2.csv": b"well,od\nA1,0.6\n",
    "plate_2/read_1.csv": b"well,od\nA1,0.7\n",
    "notes.txt": b"calibrated\n",
}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "run42", RUN)


def test_upload_a_directory_as_json(
    env: dict[str, str], run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = call(capsys, "files", "upload", str(run), "--json")
    assert done.code == 0, done.err
    doc = done.json()
    assert set(doc) == {"files", "summary"}
    assert set(doc["summary"]) == SUMMARY_KEYS
    assert all(set(entry) == UPLOAD_ENTRY_KEYS for entry in doc["files"])
    names = [e["name"] for e in doc["files"]]
    assert names == sorted(f"run42/{rel}" for rel in RUN)
    assert all(e["ok"] and not e["skipped"] and e["error"] is None for e in doc["files"])
    assert doc["summary"]["files"] == len(RUN)
    assert doc["summary"]["failed"] == 0
    assert doc["summary"]["bytes_transferred"] == sum(len(v) for v in RUN.values())
    sizes = {e["name"]: e["size_bytes"] for e in doc["files"]}
    assert sizes == {f"run42/{rel}": len(data) for rel, data in RUN.items()}


def test_upload_prints_ids_on_stdout_and_a_summary_on_stderr(
    env: dict[str, str], run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = call(capsys, "files", "upload", str(run / "notes.txt"), str(run / "plate_1"))
    assert done.code == 0, done.err
    lines = [line.split("\t") for line in done.out.splitlines()]
    assert [name for _, name in lines] == ["notes.txt", "plate_1/read_1.csv", "plate_1/read_2.csv"]
    with Labric() as client:
        for file_id, name in lines:
            assert client.files.get(file_id).original_path == name
    assert done.err_lines[-1].startswith("upload: 3 uploaded")
    # stderr is not a terminal here: plain progress lines, never a redrawn bar.
    assert "\r" not in done.err
    assert "\x1b" not in done.err


def test_upload_expands_a_quoted_glob(
    env: dict[str, str], run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = call(capsys, "files", "upload", f"{run}/**/*.csv", "--json", "--quiet")
    assert done.code == 0, done.err
    assert sorted(e["name"] for e in done.json()["files"]) == [
        "plate_1/read_1.csv",
        "plate_1/read_2.csv",
        "plate_2/read_1.csv",
    ]
    assert done.err == ""  # --quiet: no progress, no summary


def test_upload_skip_existing_and_concurrency(
    env: dict[str, str], run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert call(capsys, "files", "upload", str(run), "-q").code == 0
    (run / "notes.txt").write_bytes(b"recalibrated\n")
    again = call(
        capsys, "files", "upload", str(run), "--skip-existing", "--concurrency", "2", "--json"
    )
    assert again.code == 0, again.err
    skipped = {e["name"]: e["skipped"] for e in again.json()["files"]}
    assert skipped == {f"run42/{rel}": rel != "notes.txt" for rel in RUN}


@pytest.mark.parametrize(
    ("argument", "message"),
    [("missing.csv", "no such file or directory"), ("*.nothing", "no files match")],
)
def test_a_path_that_names_nothing_fails_alone(
    env: dict[str, str],
    server: ThreadedServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argument: str,
    message: str,
) -> None:
    make_tree(tmp_path, {"real.csv": b"x\n"})
    done = call(capsys, "files", "upload", str(tmp_path / "real.csv"), str(tmp_path / argument))
    assert done.code == 4
    # Reported per path, as upload_many reports per file; the real file is uploaded.
    assert done.err_lines[-1] == f"labric: error: {tmp_path / argument}: {message}"
    assert "1 uploaded" in done.err
    with Labric() as client:
        assert [f.file_name for f in client.files.list()] == ["real.csv"]


def test_ls_filters_and_json_shape(
    env: dict[str, str], server: ThreadedServer, run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    instrument = server.create_instrument("reader")
    assert call(capsys, "files", "upload", str(run / "plate_1"), "-q").code == 0
    done = call(capsys, "files", "upload", str(run / "plate_2"), "--instrument", instrument, "-q")
    assert done.code == 0, done.err
    call(capsys, "files", "upload", str(run / "notes.txt"), "-q")

    listed = call(capsys, "files", "ls", "--json")
    assert listed.code == 0
    files = listed.json()
    assert all(set(f) == FILE_KEYS for f in files)
    assert sorted(f["original_path"] for f in files) == sorted(
        ["plate_1/read_1.csv", "plate_1/read_2.csv", "plate_2/read_1.csv", "notes.txt"]
    )

    def paths(*args: str) -> list[str]:
        done = call(capsys, "files", "ls", "--json", *args)
        assert done.code == 0, done.err
        return sorted(f["original_path"] for f in done.json())

    assert paths("--ext", "txt") == ["notes.txt"]
    assert paths("--instrument", instrument) == ["plate_2/read_1.csv"]
    assert paths("--query", "PLATE_1 read_2") == ["plate_1/read_2.csv"]
    assert len(paths("--limit", "2")) == 2

    table = call(capsys, "files", "ls", "--ext", "csv")
    header, *rows = table.out.splitlines()
    assert header.split() == ["FILE_ID", "SIZE", "CREATED", "PATH"]
    assert sorted(row.split()[-1] for row in rows) == sorted(
        ["plate_1/read_1.csv", "plate_1/read_2.csv", "plate_2/read_1.csv"]
    )


def test_info(env: dict[str, str], run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    up = call(capsys, "files", "upload", str(run / "notes.txt"), "--json", "-q").json()
    file_id = up["files"][0]["file_id"]
    done = call(capsys, "files", "info", file_id, "--json")
    assert done.code == 0
    info = done.json()
    assert set(info) == FILE_KEYS
    assert info["file_id"] == file_id
    assert info["size_bytes"] == len(RUN["notes.txt"])
    assert info["crc32c_hash"] == up["files"][0]["crc32c_hash"]
    human = call(capsys, "files", "info", file_id)
    fields = dict(line.split(None, 1) for line in human.out.splitlines() if len(line.split()) > 1)
    assert fields["file_id"] == file_id
    assert fields["original_path"] == "notes.txt"


def test_download_to_a_directory_then_again(
    env: dict[str, str], run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    up = call(capsys, "files", "upload", str(run), "--json", "-q").json()
    ids = {e["name"]: e["file_id"] for e in up["files"]}
    dest = tmp_path / "back"

    done = call(capsys, "files", "download", *ids.values(), "-o", str(dest), "--json")
    assert done.code == 0, done.err
    doc = done.json()
    assert set(doc) == {"files", "summary"}
    assert set(doc["summary"]) == SUMMARY_KEYS
    assert all(set(e) == DOWNLOAD_ENTRY_KEYS for e in doc["files"])
    assert [e["file_id"] for e in doc["files"]] == list(ids.values())
    for name in ids:
        assert (dest / name).read_bytes() == RUN[name.removeprefix("run42/")]
    assert {Path(e["path"]) for e in doc["files"]} == {dest / name for name in ids}

    # Rerunning (as after an interruption) skips what is already there and identical.
    again = call(capsys, "files", "download", *ids.values(), "-o", str(dest), "--json")
    assert again.code == 0
    assert all(e["skipped"] for e in again.json()["files"])
    assert again.json()["summary"]["bytes_transferred"] == 0


def test_download_does_not_replace_a_different_local_file_unless_asked(
    env: dict[str, str], run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    up = call(capsys, "files", "upload", str(run / "notes.txt"), "--json", "-q").json()
    file_id = up["files"][0]["file_id"]
    local = make_tree(tmp_path / "back", {"notes.txt": b"mine\n"}) / "notes.txt"

    refused = call(capsys, "files", "download", file_id, "-o", str(local.parent), "-q")
    assert refused.code == 1
    assert refused.err_lines[-1].startswith(f"labric: error: {file_id}: ")
    assert refused.err_lines[-1].endswith("pass --overwrite to replace it")
    assert local.read_bytes() == b"mine\n"

    replaced = call(
        capsys, "files", "download", file_id, "-o", str(local.parent), "--overwrite", "-q"
    )
    assert replaced.code == 0, replaced.err
    assert local.read_bytes() == RUN["notes.txt"]
    assert replaced.out.strip() == str(local)


def test_download_of_a_missing_file_exits_not_found(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = call(capsys, "files", "download", "no-such-file", "-o", str(tmp_path), "--json")
    assert done.code == 4
    entry = done.json()["files"][0]
    assert entry["ok"] is False
    assert entry["error"].startswith("404 ")


def test_rm(env: dict[str, str], run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    up = call(capsys, "files", "upload", str(run / "plate_1"), "--json", "-q").json()
    ids = [e["file_id"] for e in up["files"]]

    done = call(capsys, "files", "rm", ids[0])
    assert done.code == 0
    assert done.out == f"deleted {ids[0]}\n"

    mixed = call(capsys, "files", "rm", ids[1], ids[0], "--json")
    assert mixed.code == 4  # the one failure is a 404
    doc = mixed.json()
    assert set(doc) == {"deleted", "failed"}
    assert doc["deleted"] == [ids[1]]
    assert [f["file_id"] for f in doc["failed"]] == [ids[0]]
    assert set(doc["failed"][0]) == {"file_id", "error"}
    assert mixed.err_lines == [mixed.err_lines[0]]
    assert mixed.err.startswith(f"labric: error: {ids[0]}: 404 ")
    with Labric() as client:
        assert list(client.files.list()) == []


def test_files_needs_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        call(capsys, "files")
    assert excinfo.value.code == 2


def test_help_explains_why_there_is_no_api_key_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        call(capsys, "files", "upload", "--help")
    assert excinfo.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "no --api-key option" not in text  # said once, in `labric --help`
    with pytest.raises(SystemExit) as excinfo:
        call(capsys, "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "LABRIC_API_KEY" in text
    assert "no --api-key option" in text
    assert "shell history" in text
    with pytest.raises(SystemExit) as excinfo:
        call(capsys, "files", "ls", "--api-key", "lbk_x_y")
    assert excinfo.value.code == 2


def test_relative_paths_work_from_the_current_directory(
    env: dict[str, str],
    run: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(run.parent)
    done = call(capsys, "files", "upload", "run42", "--json", "-q")
    assert done.code == 0, done.err
    assert [e["source"] for e in done.json()["files"]] == [
        os.path.join(str(run), *rel.split("/")) for rel in sorted(RUN)
    ]
