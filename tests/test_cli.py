"""The ``savedhub`` command, driven in subprocesses as a user would run it.

Commands that need TensorFlow cost ~4 s of start-up each, so those checks run
several command lines through ``savedhub.cli.main`` inside one subprocess
(``run_batch``); the TensorFlow-free commands run as separate processes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from httpserver import HubServer
from hubserver import free_port

COMMAND = [sys.executable, "-m", "savedhub.cli"]
TIMEOUT = 300

_BATCH = """
import contextlib, io, json, sys
from savedhub.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    results.append([code, out.getvalue(), err.getvalue()])
print("\\n" + json.dumps(results))
"""


def run(*args: str, importtime: bool = False) -> subprocess.CompletedProcess[str]:
    prefix = [sys.executable, "-X", "importtime", "-m", "savedhub.cli"] if importtime else COMMAND
    return subprocess.run(
        [*prefix, *args], capture_output=True, text=True, timeout=TIMEOUT, env=os.environ.copy()
    )


def run_batch(*commands: list[str]) -> list[tuple[int, str, str]]:
    """Run each command line through ``main`` in one fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _BATCH, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    return [tuple(r) for r in json.loads(done.stdout.strip().splitlines()[-1])]


def imported_modules(importtime_stderr: str) -> set[str]:
    """Top-level package names from ``python -X importtime`` output."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("savedhub:")]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("savedhub: error: ")
    return lines[0]


@pytest.fixture
def broken_model(my_mul_path: str, tmp_path: Path) -> Path:
    """A SavedModel whose variables index was lost: lint error missing-variable-files."""
    model = tmp_path / "broken"
    shutil.copytree(my_mul_path, model)
    (model / "variables" / "variables.index").unlink()
    return model


def test_help_lists_every_command_without_importing_tensorflow() -> None:
    done = run("--help", importtime=True)
    assert done.returncode == 0
    for name in ("download", "info", "lint", "pack", "convert", "demo", "cache"):
        assert f"    {name} " in done.stdout
    modules = imported_modules(done.stderr)
    assert "savedhub" in modules and "tensorflow" not in modules

    script = (
        "import sys\nfrom savedhub.cli import main\n"
        "for argv in (['download'], ['info'], ['lint'], ['pack'], ['convert'], ['cache'],"
        " ['cache', 'ls'], ['cache', 'verify'], ['cache', 'prune'], ['cache', 'rm']):\n"
        "    try:\n        main([*argv, '--help'])\n"
        "    except SystemExit as exc:\n        assert exc.code == 0, argv\n"
        "print('TF', 'tensorflow' in sys.modules)\n"
    )
    helps = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert helps.returncode == 0, helps.stderr
    assert helps.stdout.count("usage: savedhub ") == 10
    assert "--older-than AGE" in helps.stdout and "OUT.tar.gz" in helps.stdout
    assert helps.stdout.strip().endswith("TF False")


def test_console_script_is_installed() -> None:
    script = shutil.which(
        "savedhub", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    )
    assert script, "the savedhub console script is not installed (pip install -e .)"
    done = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0 and done.stdout.startswith("savedhub ")


def test_usage_errors_exit_2() -> None:
    assert run("lint").returncode == 2
    assert run("frobnicate").returncode == 2
    done = run("cache", "rm")
    assert done.returncode == 2 and "either a HANDLE or --all" in done.stderr
    done = run("cache", "prune", "--older-than", "soon")
    assert done.returncode == 2 and "invalid duration value" in done.stderr


def test_download_then_manage_the_cache(my_mul_path: str, tmp_path: Path) -> None:
    import savedhub

    archive = savedhub.pack(my_mul_path, tmp_path / "my_mul.tar.gz")
    cache_dir = str(tmp_path / "cli-cache")
    with HubServer() as hub:
        hub.add_model("/test/my_mul/1", Path(archive.path).read_bytes())
        url = hub.url("/test/my_mul/1")

        done = run("download", url, "--cache-dir", cache_dir, importtime=True)
        assert done.returncode == 0, done.stderr
        assert "tensorflow" not in imported_modules(done.stderr)
        path = Path(done.stdout.strip())
        assert path.is_dir() and str(path).startswith(cache_dir)
        assert (path / "saved_model.pb").is_file()

        again = run("download", url, "--cache-dir", cache_dir, "--json")
        assert json.loads(again.stdout) == {"handle": url, "path": str(path)}
        assert hub.count("/test/my_mul/1", query="tf-hub-format=compressed") == 1

    listed = run("cache", "ls", "--cache-dir", cache_dir, importtime=True)
    assert listed.returncode == 0
    assert "tensorflow" not in imported_modules(listed.stderr)
    header, row = listed.stdout.strip().splitlines()
    assert header.split()[:2] == ["HANDLE", "SIZE"]
    assert row.startswith(url) and row.endswith("complete")
    (entry,) = json.loads(run("cache", "ls", "--cache-dir", cache_dir, "--json").stdout)
    assert entry["handle"] == url and entry["state"] == "complete"
    assert entry["size"] == sum(f.stat().st_size for f in path.rglob("*") if f.is_file())

    assert run("cache", "verify", "--cache-dir", cache_dir).returncode == 0
    (path / "variables" / "variables.index").unlink()  # a /tmp cleaner strikes
    damaged = run("cache", "verify", "--cache-dir", cache_dir, importtime=True)
    assert damaged.returncode == 1
    assert "tensorflow" not in imported_modules(damaged.stderr)
    assert f"damaged: {url}" in damaged.stdout and "1 damaged" in damaged.stdout
    report = json.loads(run("cache", "verify", "--cache-dir", cache_dir, "--json").stdout)
    assert report["damaged"] == 1 and report["entries"][0]["state"] == "damaged"

    dry = run("cache", "prune", "--max-size", "0", "--dry-run", "--cache-dir", cache_dir, "--json")
    assert dry.returncode == 0
    assert [e["handle"] for e in json.loads(dry.stdout)["removed"]] == [url]
    assert path.exists()
    kept = run("cache", "prune", "--older-than", "30d", "--cache-dir", cache_dir, importtime=True)
    assert kept.returncode == 0 and "removed 0 model(s)" in kept.stdout and path.exists()
    assert "tensorflow" not in imported_modules(kept.stderr)

    removed = run("cache", "rm", url, "--cache-dir", cache_dir, importtime=True)
    assert removed.returncode == 0 and f"removed: {url}" in removed.stdout
    assert "tensorflow" not in imported_modules(removed.stderr)
    assert not path.exists()
    missing = run("cache", "rm", url, "--cache-dir", cache_dir)
    assert missing.returncode == 1 and "not in the cache" in missing.stdout
    assert run("cache", "ls", "--cache-dir", cache_dir).stdout.strip() == "The cache is empty."
    assert run("cache", "rm", "--all", "--cache-dir", cache_dir).returncode == 0


def test_download_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # a port nobody listens on
    monkeypatch.setenv("SAVEDHUB_HTTP_RETRIES", "0")
    done = run("download", f"http://127.0.0.1:{port}/test/model/1")
    assert done.returncode == 3
    assert f"127.0.0.1:{port}" in one_line_error(done.stderr)


def test_info_lint_and_errors(
    text_embedding_path: str, keras3_export_path: str, broken_model: Path, tmp_path: Path
) -> None:
    results = run_batch(
        ["info", text_embedding_path],
        ["info", text_embedding_path, "--json"],
        ["lint", text_embedding_path],
        ["lint", keras3_export_path, "--json"],
        ["lint", str(broken_model)],
        ["lint", str(tmp_path)],
        ["info", str(tmp_path / "nothing")],
        ["convert", str(tmp_path / "no-such-model"), str(tmp_path / "out")],
    )
    (code, out, _), (json_code, json_out, _) = results[0], results[1]
    assert code == json_code == 0
    assert "format:     TF2 SavedModel" in out
    assert "__call__:   yes, traced for training=False, True" in out
    assert "in  inputs: string[?]" in out
    data = json.loads(json_out)
    assert data["call_training_values"] == [False, True] and data["assets"] == ["vocab.txt"]

    code, out, _ = results[2]
    assert code == 0 and out.strip() == f"{text_embedding_path}: 0 error(s), 0 warning(s)"
    code, out, _ = results[3]
    report = json.loads(out)
    assert code == 0 and report["errors"] == 0 and report["warnings"] == 2
    assert {f["code"] for f in report["findings"]} == {
        "missing-call",
        "missing-regularization-losses",
    }
    code, out, _ = results[4]
    assert code == 1
    assert out.startswith("error: missing-variable-files: ")
    assert "1 error(s), 0 warning(s)" in out

    for code, out, err in results[5:]:
        assert code == 3 and out == ""
        one_line_error(err)
    assert "no saved_model.pb" in results[5][2]
    assert "does not exist" in results[6][2]
    assert "no-such-model" in results[7][2]


def test_pack_prints_a_reproducible_sha256(
    my_mul_path: str, broken_model: Path, tmp_path: Path
) -> None:
    first, second, refused, forced, as_json = run_batch(
        ["pack", my_mul_path, str(tmp_path / "a.tar.gz")],
        ["pack", my_mul_path, str(tmp_path / "b.tar.gz")],
        ["pack", str(broken_model), str(tmp_path / "broken.tar.gz")],
        ["pack", str(broken_model), str(tmp_path / "broken.tar.gz"), "--force"],
        ["pack", my_mul_path, str(tmp_path / "c.tar.gz"), "--json"],
    )
    digest = hashlib.sha256((tmp_path / "a.tar.gz").read_bytes()).hexdigest()
    assert first == (0, f"{digest}  {tmp_path / 'a.tar.gz'}\n", "")
    assert second[1].split()[0] == digest
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()

    assert refused[0] == 3
    assert "missing-variable-files" in one_line_error(refused[2]) and "--force" in refused[2]
    assert forced[0] == 0 and (tmp_path / "broken.tar.gz").is_file()
    data = json.loads(as_json[1])
    assert data["sha256"] == digest and data["size"] == (tmp_path / "c.tar.gz").stat().st_size

    checked = subprocess.run(
        ["sha256sum", "-c"], input=first[1], capture_output=True, text=True, cwd=tmp_path
    )
    assert checked.returncode == 0 and "OK" in checked.stdout


def test_demo_hands_its_arguments_to_the_demo() -> None:
    done = run("demo", "--help")
    if importlib.util.find_spec("savedhub.demo.run") is None:
        assert done.returncode == 3
        assert "savedhub.demo.run is missing" in one_line_error(done.stderr)
    else:
        assert done.returncode == 0, done.stderr
        assert "usage:" in done.stdout and "[argv" not in done.stdout


def test_our_errors_are_one_line_and_debug_adds_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from savedhub.cli import main

    monkeypatch.setenv("SAVEDHUB_HTTP_RETRIES", "lots")
    url = "http://127.0.0.1:9/test/model/1"
    assert main(["download", url]) == 3
    assert "SAVEDHUB_HTTP_RETRIES='lots'" in one_line_error(capsys.readouterr().err)
    assert main(["--debug", "download", url]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "ConfigError" in err
    assert err.strip().splitlines()[-1].startswith("savedhub: error: SAVEDHUB_HTTP_RETRIES=")


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from savedhub.cli import main
    from savedhub.client import resolver

    def broken(handle: str, **options: object) -> str:
        raise ValueError("a bug, not the user's mistake")

    monkeypatch.setattr(resolver, "resolve", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["download", "/models/m"])


def test_cache_dir_option_leaves_the_environment_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from savedhub.cli import main

    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"")
    before = dict(os.environ)
    assert main(["download", str(model), "--cache-dir", str(tmp_path / "elsewhere")]) == 0
    assert capsys.readouterr().out.strip() == str(model)
    assert dict(os.environ) == before


@pytest.mark.parametrize(
    "line, noise",
    [
        (
            "WARNING: All log messages before absl::InitializeLog() is called are written to",
            True,
        ),
        (
            "I0000 00:00:1795802773.222025   15085 port.cc:153] oneDNN custom operations are on.",
            True,
        ),
        (
            "I0000 00:00:1795802773.222344   15085 cudart_stub.cc:31] Could not find cuda drivers",
            True,
        ),
        (
            "W0000 00:00:1795802773.378292   15085 cpu_feature_guard.cc:227] This binary",
            True,
        ),
        (
            "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild",
            True,
        ),
        (
            "E0000 00:00:1795802780.056282   15085 op_kernel.cc:52] could not load library x.so",
            False,
        ),
        ("savedhub: error: No model at '/m'", False),
        ("Traceback (most recent call last):", False),
    ],
)
def test_start_up_noise_is_recognised(line: str, noise: bool) -> None:
    from savedhub._quiet_tensorflow import is_start_up_noise

    assert is_start_up_noise(line + "\n") is noise


def test_commands_that_import_tensorflow_print_only_their_own_output(my_mul_path: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}

    def info(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*COMMAND, *flags, "info", my_mul_path],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env,
        )

    quiet, verbose = info(), info("--verbose")
    assert quiet.returncode == verbose.returncode == 0
    assert "format:" in quiet.stdout and quiet.stdout == verbose.stdout
    assert quiet.stderr == ""
    from savedhub._quiet_tensorflow import is_start_up_noise

    assert any(is_start_up_noise(line) for line in verbose.stderr.splitlines()), verbose.stderr
