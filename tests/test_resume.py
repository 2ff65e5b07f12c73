"""Runs that survive being killed (issue 21): every epoch leaves `resume.pt`, and a run stopped at
any point (SIGKILL mid-epoch, Ctrl-C, a kill inside the checkpoint's write) and run again ends
with the bits of the uninterrupted run: metrics, best model and log. compare/ablation/sweep
resume their half-finished runs the same way."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import gprec.training.rows as rows_module
import gprec.training.trainer as trainer_module
from conftest import write_ml100k
from gprec.cli.main import main
from gprec.training.resume import RESUME, read_checkpoint
from gprec.training.run_dir import read_status, run_state

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ml-100k"
# Where training's random draws come from: dropout (torch's global generator), the batch
# order, the implicit task's negatives, GPRec's Gumbel noise. StepLR decays every 3 epochs: not
# a multiple of the epoch the in-process tests resume from, so a lost scheduler would show.
VARIANTS = {
    "binary": ["-c", str(CONFIGS / "mlp.yaml"), "--set", "model.dropout=0.1"],
    "regression": [
        "-c", str(CONFIGS / "mlp.yaml"), "--set", "train.task=regression",
        "--set", "data.target=value",
    ],
    "implicit": [
        "-c", str(CONFIGS / "mlp.yaml"), "--set", "train.task=implicit",
        "--set", "train.eval_negatives=10",
    ],
    "gprec": ["-c", str(CONFIGS / "gprec-dynamic.yaml"), "--set", "model.n_groups=4"],
    "gprec-implicit": [
        "-c", str(CONFIGS / "gprec-dynamic.yaml"), "--set", "model.n_groups=4",
        "--set", "train.task=implicit", "--set", "train.eval_negatives=10",
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 200 items: every user keeps enough unseen ones for the implicit task's lists
    return write_ml100k(tmp_path_factory.mktemp("ml") / "ml-100k", n_items=200, n_ratings=3000)


def train_args(data, out, variant="binary", batch_size=128, epochs=6):
    return [
        *VARIANTS[variant], "--set", f"data.path={data}",
        "--set", f"data.cache_dir={data.parent / 'cache'}",
        "--set", f"train.batch_size={batch_size}", "--set", f"train.max_epochs={epochs}",
        "--set", "train.patience=3", "--set", "train.lr=0.005", "--set", "train.lr_step=3",
        "--set", "train.threads=1", "--set", "train.progress=false", "--out", str(out),
    ]  # fmt: skip


def train(*args) -> int:
    return main(["train", *args])


def assert_same_run(a: Path, b: Path) -> None:
    """Bit for bit: test and valid metrics, epochs, the best model, and the per-epoch log but
    for its timings."""
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma["test"] == mb["test"] and ma["valid"] == mb["valid"]
    assert ma["epochs_run"] == mb["epochs_run"]
    sa, sb = (torch.load(d / "model.pt", weights_only=True)["state_dict"] for d in (a, b))
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k

    def log(d):
        lines = [json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()]
        return [
            {k: v for k, v in r.items() if k not in ("seconds", "samples_per_second")}
            for r in lines
        ]

    assert log(a) == log(b) and len(log(a)) == ma["epochs_run"]
    assert not (a / RESUME).exists() and not (b / RESUME).exists()  # gone once finished


def interrupt_in_epoch(monkeypatch, epoch: int, after_batches: int = 2) -> None:
    """Ctrl-C inside epoch `epoch`'s step loop, after `after_batches` steps: the random draws
    of those steps are made, the epoch's checkpoint is not."""
    real = rows_module.iterate_batches
    epochs = [0]

    def batches(*args, **kwargs):
        epochs[0] += 1
        for i, batch in enumerate(real(*args, **kwargs)):
            if epochs[0] == epoch and i == after_batches:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(rows_module, "iterate_batches", batches)


def checkpoint_epoch(run: Path) -> int:
    return torch.load(run / RESUME, weights_only=True)["epoch"]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """Uninterrupted runs, one per variant, made on first use."""
    root, made = tmp_path_factory.mktemp("reference"), {}

    def get(variant: str) -> Path:
        if variant not in made:
            out = root / variant
            assert train(*train_args(data, out, variant)) == 0
            made[variant] = out
        return made[variant]

    return get


# -- resumed runs end as uninterrupted ones ---------------------------------------------------


@pytest.mark.parametrize("variant", ["binary", "regression", "implicit", "gprec"])
def test_a_run_stopped_mid_epoch_resumes_to_the_same_bits(
    variant, data, reference, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        interrupt_in_epoch(m, epoch=3)
        assert train(*train_args(data, out, variant)) == 130
    assert run_state(out) == "interrupted" and checkpoint_epoch(out) == 2
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()
    assert train(*train_args(data, out, variant)) == 0
    err = capsys.readouterr().err
    assert "run of this config: resuming after epoch 2 (--restart trains from scratch)" in err
    assert "epoch   1 " not in err and "epoch   3 " in err
    assert read_status(out)["state"] == "finished"
    assert read_status(out)["resumed_from_epoch"] == 2
    assert_same_run(out, reference(variant))


def test_sigkill_at_a_random_point_mid_epoch_then_resume(data, reference, tmp_path, capsys):
    """A real SIGKILL from outside, at a random moment of a random epoch's steps; GPRec on the
    implicit task draws from every generator there is."""
    rng = random.Random()
    kill_after, fraction = rng.choice([1, 2]), rng.uniform(0.1, 0.5)
    what = f"(killed in epoch {kill_after + 1} at {fraction:.2f} of its steps)"
    ref = reference("gprec-implicit")
    ref_seconds = [json.loads(x)["seconds"] for x in (ref / "log.jsonl").read_text().splitlines()]
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gprec.cli.main", "train", *train_args(data, out, "gprec-implicit")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        log = out / "log.jsonl"
        while not (out / RESUME).is_file() or checkpoint_epoch(out) < kill_after:
            assert time.monotonic() < deadline and proc.poll() is None, what
            time.sleep(0.005)
        # the next epoch's steps have begun: sleep into them (the child's epoch k took this long)
        seconds = json.loads(log.read_text().splitlines()[kill_after - 1])["seconds"]
        time.sleep(fraction * min(seconds, ref_seconds[kill_after]))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert run_state(out) == "interrupted" and not (out / "metrics.json").exists()
    assert checkpoint_epoch(out) == kill_after, what  # killed before its next checkpoint
    capsys.readouterr()
    assert train(*train_args(data, out, "gprec-implicit")) == 0, what
    assert f"resuming after epoch {kill_after}" in capsys.readouterr().err
    assert_same_run(out, ref)


# -- a damaged or half-written checkpoint is never read ---------------------------------------


@pytest.fixture
def stopped(data, tmp_path, monkeypatch):
    """A binary run stopped in epoch 3: its resume.pt is epoch 2's."""
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        interrupt_in_epoch(m, epoch=3)
        assert train(*train_args(data, out)) == 130
    return out


def test_a_kill_inside_the_checkpoint_write_resumes_from_the_previous_one(
    data, reference, stopped, capsys
):
    # A SIGKILL inside save_atomic leaves its temp file, half written, beside the intact
    # previous resume.pt; the temp file is never read, and is removed.
    good = (stopped / RESUME).read_bytes()
    temp = stopped / f".{RESUME}.k3x9q1"
    temp.write_bytes(good[: len(good) // 3])
    capsys.readouterr()
    assert train(*train_args(data, stopped)) == 0
    assert "resuming after epoch 2" in capsys.readouterr().err
    assert not temp.exists()
    assert_same_run(stopped, reference("binary"))


def test_a_truncated_checkpoint_restarts_cleanly_saying_why(data, reference, stopped, capsys):
    path = stopped / RESUME
    path.write_bytes(path.read_bytes()[:1000])
    capsys.readouterr()
    # --resume insists: one error line, nothing touched
    before = path.read_bytes()
    assert train(*train_args(data, stopped), "--resume") == 2
    err = capsys.readouterr().err
    assert f"gprec: error: --resume: cannot resume: {path} cannot be read" in err
    assert path.read_bytes() == before
    # by default: from scratch, saying why
    assert train(*train_args(data, stopped)) == 0
    err = capsys.readouterr().err
    assert (
        "holds an unfinished (interrupted) run of this config: training it again from scratch "
        f"({path} cannot be read" in err
    )
    assert "epoch   1 " in err
    assert_same_run(stopped, reference("binary"))


def test_restart_trains_from_scratch_and_resume_needs_an_unfinished_run(
    data, reference, stopped, tmp_path, capsys
):
    capsys.readouterr()
    assert train(*train_args(data, tmp_path / "new"), "--resume") == 2
    assert "--resume: " in capsys.readouterr().err and not (tmp_path / "new").exists()
    assert train(*train_args(data, stopped), "--resume", "--overwrite") == 2
    assert "--resume and --overwrite contradict" in capsys.readouterr().err
    assert main(["train", *train_args(data, stopped)[:-2], "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: the two are exclusive
        train(*train_args(data, stopped), "--resume", "--restart")
    capsys.readouterr()
    assert train(*train_args(data, stopped), "--restart") == 0
    err = capsys.readouterr().err
    assert "run of this config: training it again" in err and "resuming" not in err
    assert "epoch   1 " in err
    assert_same_run(stopped, reference("binary"))
    # --resume on a finished run reports it, as a plain rerun does
    assert train(*train_args(data, stopped), "--resume") == 0
    assert "finished run of this config: reporting it" in capsys.readouterr().err


def test_a_checkpoint_this_trainer_cannot_load_is_one_line_naming_restart(data, stopped, capsys):
    ckpt = torch.load(stopped / RESUME, weights_only=True)
    del ckpt["rng"]["generators"]["shuffle"]  # as if another gprec had written it
    torch.save(ckpt, stopped / RESUME)
    capsys.readouterr()
    assert train(*train_args(data, stopped)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("gprec: error: resume.pt does not fit this model and trainer")
    assert err[-1].endswith("--restart trains the run from scratch")
    assert read_status(stopped)["state"] == "failed"
    assert train(*train_args(data, stopped), "--restart") == 0


def test_resume_flag_resumes(data, reference, stopped, capsys):
    capsys.readouterr()
    assert train(*train_args(data, stopped), "--resume") == 0
    assert "resuming after epoch 2" in capsys.readouterr().err
    assert_same_run(stopped, reference("binary"))


def test_a_checkpoint_of_another_config_or_other_data_is_refused(stopped):
    config = (stopped / "config.yaml").read_text()
    ckpt = torch.load(stopped / RESUME, weights_only=True)
    meta = ckpt["meta"]["data"]
    assert read_checkpoint(stopped, config, meta)[0]["epoch"] == 2
    other = config.replace("lr: 0.005", "lr: 0.004")
    assert other != config
    _, why = read_checkpoint(stopped, other, meta)
    assert "was written for another config (train.lr: 0.005 -> 0.004)" in why
    _, why = read_checkpoint(stopped, config, meta | {"rows": {"train": 1}})
    assert "was written for other data" in why
    (stopped / RESUME).write_bytes(b"")
    assert "cannot be read" in read_checkpoint(stopped, config, meta)[1]
    (stopped / RESUME).unlink()
    assert "holds no resume.pt" in read_checkpoint(stopped, config, meta)[1]


def test_a_run_stopped_after_its_last_checkpoint_only_finishes(data, reference, tmp_path):
    """Killed between the last epoch's checkpoint and metrics.json: nothing is trained again."""
    out = tmp_path / "run"
    ref = reference("binary")
    epochs = json.loads((ref / "metrics.json").read_text())["epochs_run"]
    real = trainer_module.Trainer.evaluate
    calls = [0]

    def evaluate(self, *args, **kwargs):
        if "negatives" in kwargs:  # the test split, after fit
            raise KeyboardInterrupt
        calls[0] += 1
        return real(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(trainer_module.Trainer, "evaluate", evaluate)
        assert train(*train_args(data, out)) == 130
    assert checkpoint_epoch(out) == epochs == calls[0]
    assert train(*train_args(data, out)) == 0
    assert_same_run(out, ref)


# -- compare, ablation and sweep resume half-finished runs ------------------------------------


def test_a_killed_compare_resumes_its_half_finished_run(data, tmp_path, capsys):
    def compare(out):
        return [
            "compare", *train_args(data, out)[:-2], "--models", "mlp", "--seeds", "1,2",
            "--out", str(out),
        ]  # fmt: skip

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gprec.cli.main", *compare(killed)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    second = killed / "mlp" / "seed-2"
    try:
        deadline = time.monotonic() + 300
        while not (second / RESUME).is_file() or checkpoint_epoch(second) < 2:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert run_state(killed / "mlp" / "seed-1") == "finished"
    assert run_state(second) == "interrupted"
    capsys.readouterr()
    assert main(compare(killed)) == 0
    err = capsys.readouterr().err
    assert "[run 1/2: mlp seed 1] finished before" in err
    assert "resuming after epoch" in err
    whole = tmp_path / "whole"
    assert main(compare(whole)) == 0
    runs = [json.loads((d / "comparison.json").read_text())["runs"] for d in (killed, whole)]
    for r in runs:
        for seed in r["mlp"].values():
            for key in ("seconds_per_epoch", "samples_per_second", "wall_seconds"):
                seed.pop(key)
    assert runs[0] == runs[1]
    for seed in (1, 2):
        assert_same_run(killed / "mlp" / f"seed-{seed}", whole / "mlp" / f"seed-{seed}")
