"""Issue 16: no run silently replaced, nothing written before validation, unfinished runs marked,
and one line instead of a traceback for a user's mistake (train, compare and the CLI shell)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from gprec.cli.main import main
from gprec.training.run_dir import claim_run_dir, read_status, run_state

TINY = "{n_users: 150, n_items: 60, n_interactions: 4000, n_groups: 4, seed: 1}"


def tiny(tmp_path, epochs=2, lr=None):
    args = [
        "--set", f"data.synthetic={TINY}",
        "--set", f"data.cache_dir={tmp_path / 'cache'}",
        "--set", f"train.max_epochs={epochs}",
        "--set", "train.batch_size=512",
        "--set", "train.progress=false",
    ]  # fmt: skip
    return args + (["--set", f"train.lr={lr}"] if lr else [])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    errors = [line for line in err if line.startswith("gprec: error:")]
    assert len(errors) == 1 and errors[0] == err[-1]
    return errors[0]


def snapshot(directory):
    """Every file under `directory` with its bytes: equal snapshots mean nothing was touched."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def finished_run(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *tiny(tmp_path), "--out", str(out)]) == 0
    return out


# -- 1. train --out never replaces a run or a user's files silently ---------------------------


def test_train_refuses_a_finished_run_with_another_config(tmp_path, capsys, finished_run):
    before = snapshot(finished_run)
    capsys.readouterr()
    assert main(["train", *tiny(tmp_path, lr=0.01), "--out", str(finished_run)]) == 2
    line = one_error_line(capsys)
    assert "holds a finished run with a different config (train.lr: 0.002 -> 0.01)" in line
    assert "--overwrite" in line
    assert snapshot(finished_run) == before


def test_train_reports_an_identical_finished_run_without_retraining(
    tmp_path, capsys, finished_run
):
    before = snapshot(finished_run)
    metrics = json.loads((finished_run / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["train", *tiny(tmp_path), "--out", str(finished_run)]) == 0
    captured = capsys.readouterr()
    assert "finished run of this config: reporting it, not retraining" in captured.err
    assert f"test auc {metrics['test']['auc']:.4f}" in captured.out
    assert "epoch   1" not in captured.err  # nothing trained
    assert snapshot(finished_run) == before


def test_a_run_written_before_an_option_existed_is_still_this_config(
    tmp_path, capsys, finished_run
):
    """An option gprec learned later takes its default, the old behaviour: the run is reused;
    the same option set to something else is another config."""
    import yaml

    config = yaml.safe_load((finished_run / "config.yaml").read_text())
    del config["train"]["precision"], config["model"]["dropout"]  # as an older gprec wrote it
    (finished_run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    capsys.readouterr()
    assert main(["train", *tiny(tmp_path), "--out", str(finished_run)]) == 0
    assert "reporting it, not retraining" in capsys.readouterr().err
    args = ["--set", "train.precision=bf16"]
    assert main(["train", *tiny(tmp_path), *args, "--out", str(finished_run)]) == 2
    assert "train.precision: fp32 -> bf16" in one_error_line(capsys)


def test_overwrite_replaces_an_earlier_run(tmp_path, finished_run):
    assert main(["train", *tiny(tmp_path, lr=0.01), "--out", str(finished_run), "--overwrite"]) == 0
    assert "lr: 0.01" in (finished_run / "config.yaml").read_text()
    assert read_status(finished_run)["state"] == "finished"


def test_overwrite_removes_a_stale_onnx_export(tmp_path, finished_run):
    """`gprec export` writes model.onnx into the run: a retrained run must not keep it."""
    (finished_run / "model.onnx").write_bytes(b"stale")
    assert main(["train", *tiny(tmp_path, lr=0.01), "--out", str(finished_run), "--overwrite"]) == 0
    assert not (finished_run / "model.onnx").exists()


def test_train_refuses_a_directory_of_other_files_even_with_overwrite(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my own file")
    for extra in ([], ["--overwrite"]):
        assert main(["train", *tiny(tmp_path), "--out", str(out), *extra]) == 2
        line = one_error_line(capsys)
        assert "not empty and is not a gprec run directory (it holds notes.txt)" in line
        assert snapshot(out) == {"notes.txt": b"my own file"}
    assert not (tmp_path / "cache").exists()  # refused before the data was even read


# -- 2. everything validated before anything is written ---------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        pytest.param(
            "train.device=cuda",
            "torch sees no CUDA device",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here"),
        ),
        ("train.seed=99999999999999999999", "train.seed"),
        ("train.seed=-1", "train.seed"),
        ("data.split_seed=-3", "data.split_seed"),
    ],
)
def test_bad_settings_fail_before_anything_is_written(tmp_path, capsys, override, message):
    out = tmp_path / "run"
    assert main(["train", *tiny(tmp_path), "--set", override, "--out", str(out)]) == 2
    assert message in one_error_line(capsys)
    assert not out.exists() and not (tmp_path / "cache").exists()


# -- 5. an unfinished run is marked as such --------------------------------------------------


def test_status_marks_finished_failed_and_interrupted_runs(tmp_path, monkeypatch, finished_run):
    assert read_status(finished_run)["state"] == "finished"
    assert run_state(finished_run) == "finished"

    from gprec.training import trainer

    def boom(self, *a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(trainer.Trainer, "fit", boom)
    out = tmp_path / "failed"
    with pytest.raises(RuntimeError):
        main(["train", *tiny(tmp_path), "--out", str(out)])
    status = read_status(out)
    assert status["state"] == "failed" and "disk on fire" in status["error"]
    assert not (out / "metrics.json").exists()

    def stop(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.Trainer, "fit", stop)
    out = tmp_path / "stopped"
    assert main(["train", *tiny(tmp_path), "--out", str(out)]) == 130
    assert read_status(out)["state"] == "interrupted" and run_state(out) == "interrupted"


def test_a_killed_run_reads_as_interrupted_and_is_trained_again(tmp_path, capsys):
    """SIGKILL leaves status `running` with a dead pid: tools read it as interrupted, and
    `gprec train` with the same config trains it again (a live writer's run is refused)."""
    out = tmp_path / "run"
    args = [*tiny(tmp_path, epochs=100000), "--set", "train.patience=100000", "--out", str(out),
            "--set", "train.threads=1"]  # fmt: skip  (one thread: the test process has the other)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gprec.cli.main", "train", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "log.jsonl").is_file() or not (out / "log.jsonl").read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        assert run_state(out) == "running"
        with pytest.raises(Exception, match="run in progress"):
            claim_run_dir(out, (out / "config.yaml").read_text())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert read_status(out)["state"] == "running" and run_state(out) == "interrupted"
    assert not (out / "metrics.json").exists()
    capsys.readouterr()
    # another config is refused, naming what differs
    assert main(["train", *tiny(tmp_path), "--out", str(out)]) == 2
    assert "holds an interrupted run with a different config" in one_error_line(capsys)
    # the same config is trained again: shown on a short run that was also cut off
    short = tmp_path / "short"
    assert main(["train", *tiny(tmp_path), "--out", str(short)]) == 0
    (short / "metrics.json").unlink()
    (short / "status.json").write_text(json.dumps({"state": "running", "pid": proc.pid, "host": socket.gethostname()}))
    assert run_state(short) == "interrupted"
    assert main(["train", *tiny(tmp_path), "--out", str(short)]) == 0
    assert "holds an unfinished (interrupted) run of this config: training it again" in (
        capsys.readouterr().err
    )
    assert read_status(short)["state"] == "finished" and (short / "metrics.json").is_file()


# -- 6/11. compare's seeds --------------------------------------------------------------------


@pytest.mark.parametrize(
    "seeds, message",
    [
        ("-1,2", "--seeds: -1 is not a seed between 0 and 4294967295"),
        ("99999999999999999999,1", "is not a seed between 0 and"),
        ("1,1", "--seeds lists 1 more than once"),
        ("0", "--seeds must be at least 1"),
        (",", "give a count"),
    ],
)
def test_compare_rejects_bad_seed_lists(tmp_path, capsys, seeds, message):
    out = tmp_path / "cmp"
    assert main(["compare", *tiny(tmp_path), "-m", "mlp", f"--seeds={seeds}", "-o", str(out)]) == 2
    assert message in one_error_line(capsys)
    assert not out.exists()


def test_compare_checks_every_run_directory_before_the_first_run(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", *tiny(tmp_path, epochs=1), "-m", "mlp", "-s", "1,2", "-o", str(out)]) == 0
    (out / "mlp" / "seed-1" / "metrics.json").unlink()  # seed 1 now looks interrupted
    before = snapshot(out)
    capsys.readouterr()
    args = ["compare", *tiny(tmp_path, epochs=2), "-m", "mlp", "-s", "1,2", "-o", str(out)]
    assert main(args) == 2
    assert "different config (train.max_epochs: 1 -> 2); use another --out" in one_error_line(
        capsys
    )
    assert snapshot(out) == before


def test_compare_shows_run_k_of_n_and_an_eta(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", *tiny(tmp_path, epochs=1), "-m", "mlp,mlp[dropout=0.1]", "-s", "1,2"]
    assert main([*args, "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "[run 1/4: mlp seed 1] training\n" in err
    assert "[run 2/4: mlp seed 2] training, about" in err and "left" in err
    assert "[run 4/4: mlp[dropout=0.1] seed 2]" in err


# -- 8. unwritable output locations -----------------------------------------------------------


def test_out_in_a_read_only_location_is_one_line(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # Tests run as root, whom permission bits do not stop; a read-only mount is what access()
    # reports for root too, so simulate that answer for this one directory.
    monkeypatch.setattr(
        os, "access", lambda p, mode, **k: False if str(p) == str(locked) else real_access(p, mode)
    )
    for argv in (
        ["train", *tiny(tmp_path), "--out", str(locked / "run")],
        ["compare", *tiny(tmp_path), "-m", "mlp", "-s", "1", "--out", str(locked / "cmp")],
    ):
        assert main(argv) == 2
        line = one_error_line(capsys)
        assert f"{locked / 'run'}" in line or f"{locked / 'cmp'}" in line
        assert f"nearest existing parent {locked} is not writable" in line
    assert list(locked.iterdir()) == [] and not (tmp_path / "cache").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_out_in_a_read_only_directory_for_real(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert main(["train", *tiny(tmp_path), "--out", str(locked / "run")]) == 2
    assert "not writable" in one_error_line(capsys)


def test_a_write_refused_by_the_os_mid_run_is_one_line(tmp_path, capsys, monkeypatch):
    """The safety net: a permission or disk-full error the up-front checks could not foresee."""
    from gprec.training import run

    def full(path, text):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(run, "write_text_atomic", full)
    out = tmp_path / "run"
    assert main(["train", *tiny(tmp_path), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert line == f"gprec: error: {out / 'config.yaml'}: No space left on device"
    assert read_status(out)["state"] == "failed"


# -- 9. a closed pipe ends quietly -----------------------------------------------------------


def test_a_closed_stdout_pipe_gives_no_traceback(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "gprec.cli.main", "models"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    proc.stdout.close()  # the reader is gone before the first write, as with `| head -0`
    err = proc.stderr.read().decode()
    assert proc.wait() == 141
    assert err == ""


def test_inspect_into_head_gives_no_traceback(tmp_path):
    env = {**os.environ, "GPREC_CACHE": str(tmp_path / "cache")}
    cmd = f"{sys.executable} -m gprec.cli.main data inspect --set data.synthetic='{TINY}' | head -2"
    proc = subprocess.run(
        ["bash", "-c", cmd], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


# -- 11. a run cut off by max_epochs while still improving is flagged ----------------------


def test_warns_when_validation_still_improves_at_max_epochs(tmp_path, monkeypatch, capsys):
    from gprec.training import trainer

    calls = iter(range(1, 100))
    monkeypatch.setattr(
        trainer.Trainer,
        "evaluate",
        lambda self, X, y, negatives=None: {"auc": 0.5 + next(calls) / 1000, "logloss": 0.6},
    )
    out = tmp_path / "run"
    assert main(["train", *tiny(tmp_path, epochs=3), "--out", str(out)]) == 0
    assert "warning: validation AUC still improved at the last epoch (3 = train.max_epochs)" in (
        capsys.readouterr().err
    )
    assert "raise train.max_epochs" in json.loads((out / "metrics.json").read_text())["warnings"][0]


# -- review findings: damaged run directories, locks, compare's directory, odd input ----------


@pytest.mark.parametrize(
    "name, content",
    [
        ("config.yaml", os.urandom(100)),
        ("config.yaml", b"- a list\n- not a config\n"),
        ("config.yaml", b"{unclosed: [\n"),
        ("status.json", b"[1]"),
        ("metrics.json", b"{not json"),
        ("metrics.json", b"{}"),
    ],
)
def test_a_damaged_run_directory_is_one_line_and_overwrite_gets_past_it(
    tmp_path, capsys, finished_run, name, content
):
    (finished_run / name).write_bytes(content)
    args = ["train", *tiny(tmp_path), "--out", str(finished_run)]
    code = main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if code == 2:  # refused, naming why
        assert "--overwrite" in one_error_line_of(captured.err)
    else:  # a damaged metrics.json / status.json of the same config: an unfinished run, retrained
        assert code == 0 and name != "config.yaml"
    assert main([*args, "--overwrite"]) == 0
    assert read_status(finished_run)["state"] == "finished"


def one_error_line_of(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines[-1].startswith("gprec: error:")
    return lines[-1]


def test_a_directory_left_with_only_a_status_is_trained_over(tmp_path, capsys):
    """What a full disk leaves: status.json and nothing else. It is gprec's own, not foreign."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "status.json").write_text('{"state": "failed"}')
    assert main(["train", *tiny(tmp_path), "--out", str(out)]) == 0
    assert read_status(out)["state"] == "finished"


def test_a_run_in_progress_on_another_host_yields_only_to_overwrite(tmp_path, capsys, finished_run):
    (finished_run / "metrics.json").unlink()
    (finished_run / "status.json").write_text('{"state": "running", "pid": 12345, "host": "old"}')
    args = ["train", *tiny(tmp_path), "--out", str(finished_run)]
    assert main(args) == 2
    line = one_error_line(capsys)
    assert "run in progress (pid 12345 on old)" in line and "pass --overwrite" in line
    assert main([*args, "--overwrite"]) == 0


def test_a_run_beside_a_users_file(tmp_path, capsys, finished_run):
    (finished_run / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["train", *tiny(tmp_path), "--out", str(finished_run)]) == 0  # reported: read only
    assert "reporting it, not retraining" in capsys.readouterr().err
    for extra in (["--overwrite"], ["--set", "train.lr=0.01", "--overwrite"]):
        assert main(["train", *tiny(tmp_path), "--out", str(finished_run), *extra]) == 2
        assert "files gprec did not write (notes.txt)" in one_error_line(capsys)
    assert (finished_run / "notes.txt").read_text() == "mine"


def test_train_says_it_trains_only_once_the_directory_is_claimed(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "a.txt").write_text("x")
    assert main(["train", *tiny(tmp_path), "--out", str(out)]) == 2
    assert "training mlp" not in capsys.readouterr().err


def test_compare_refuses_a_directory_of_other_files_or_a_run(tmp_path, capsys, finished_run):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "comparison.md").write_text("my notes")
    (mine / "data.csv").write_text("1,2")
    for out, message in (
        (mine, "holds files that are not a gprec comparison's (data.csv)"),
        (finished_run, "is a run directory of gprec train"),
    ):
        before = snapshot(out)
        assert main(["compare", *tiny(tmp_path), "-m", "mlp", "-s", "1", "-o", str(out)]) == 2
        assert message in one_error_line(capsys)
        assert snapshot(out) == before


def test_a_huge_seed_count_is_refused_at_once(tmp_path, capsys):
    assert main(["compare", *tiny(tmp_path), "-m", "mlp", "--seeds", "99999999999999999999"]) == 2
    assert "--seeds 99999999999999999999: at most 1000 seeds" in one_error_line(capsys)


def test_divergence_and_exhausted_memory_are_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(["train", *tiny(tmp_path), "--set", "train.lr=1e10", "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert "training diverged" in line and "lower train.lr (now 1e+10)" in line
    assert read_status(out)["state"] == "failed"
    from gprec.training import run

    def no_memory(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(run, "build_model", no_memory)
    assert main(["train", *tiny(tmp_path), "--out", str(tmp_path / "r2")]) == 2
    assert "gprec: error: out of memory" in one_error_line(capsys)


def test_an_empty_out_is_refused(tmp_path, capsys):
    assert main(["train", *tiny(tmp_path), "--out", ""]) == 2
    assert "--out is empty" in one_error_line(capsys)
