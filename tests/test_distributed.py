"""Multi-process training on torch.distributed DDP (issue 21, acceptance 5): `torchrun
--nproc_per_node N -m gprec train ...` shards the training rows by rank, gathers the predictions,
and only rank 0 writes. Two processes (gloo) on tiny data match one process; every model gives
every parameter a gradient (DDP with find_unused_parameters=False refuses any that gets none).

The torchrun tests start two processes (one thread each) twice: `torchrun -m gprec train` itself,
and once for all other scenarios (SCENARIOS), about 25 s in all on a quiet 2-core machine."""

import json
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from conftest import ML_FIELDS, toy_data, toy_fields, write_ml100k
from gprec.cli.main import main
from gprec.config import TrainConfig, parse_config
from gprec.errors import ConfigError
from gprec.models.base import Backbone
from gprec.models.registry import available_models, build_model, model_class, resolve_model_options
from gprec.training.distributed import SINGLE, Dist, session
from gprec.training.load import load_run
from gprec.training.resume import RESUME
from gprec.training.rows import ShardedRows, TensorRows, chunk_bounds
from gprec.training.run import run_training
from gprec.training.trainer import Trainer, as_tensors

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ml-100k"

# -- sharding: the processes' parts make up one process's batches ---------------------------


@pytest.mark.parametrize("n, world", [(10, 2), (11, 3), (3, 4), (0, 2), (7, 1)])
def test_chunk_bounds_cut_as_tensor_split(n, world):
    parts = torch.arange(n).tensor_split(world)
    for rank, part in enumerate(parts):
        lo, hi = chunk_bounds(n, rank, world)
        assert part.tolist() == list(range(lo, hi))


@pytest.mark.parametrize(
    "n, size, world", [(103, 10, 2), (100, 10, 2), (101, 7, 3), (21, 8, 4), (22, 10, 4)]
)
def test_the_parts_of_every_process_make_up_the_global_batches(n, size, world):
    X, y = as_tensors(*toy_data(n))
    whole = list(TensorRows(X, y).batches(size, torch.Generator().manual_seed(5)))
    parts = [
        list(ShardedRows(X, y, r, world).batches(size, torch.Generator().manual_seed(5)))
        for r in range(world)
    ]
    # Every process takes as many steps; a last batch smaller than `world` rows is dropped.
    keep = [b for b in whole if len(b[1]) >= world]
    assert all(len(p) == len(keep) == ShardedRows(X, y, 0, world).n_batches(size, 1) for p in parts)
    for i, (xb, yb) in enumerate(keep):
        assert torch.equal(torch.cat([p[i][0] for p in parts]), xb)
        assert torch.equal(torch.cat([p[i][1] for p in parts]), yb)
        shares = [p[i][2] for p in parts]
        assert sum(shares) == pytest.approx(1.0)
        assert all(s == len(p[i][1]) / len(yb) for s, p in zip(shares, parts, strict=True))


def test_without_shuffling_and_with_batchnorm_parts():
    X, y = as_tensors(*toy_data(45))
    # min_part 2 (BatchNorm): the last batch of 5 rows cannot give 3 processes 2 rows each
    parts = [list(ShardedRows(X, y, r, 3, min_part=2).batches(20, None)) for r in range(3)]
    assert [len(p) for p in parts] == [2, 2, 2]
    assert torch.equal(torch.cat([p[0][0] for p in parts]), X[:20])
    assert ShardedRows(X, y, 0, 3, min_part=2).n_batches(20, 1) == 2
    assert ShardedRows(X, y, 0, 3, min_part=1).n_batches(20, 1) == 3


def test_one_process_changes_nothing():
    assert not SINGLE.active and SINGLE.is_main() and SINGLE.world == 1
    assert SINGLE.broadcast("x") == "x" and SINGLE.all_gather(3) == [3]
    assert SINGLE.on_main(lambda: 7) == 7 and SINGLE.shard(10) == (0, 10)
    part = np.arange(4.0)
    assert SINGLE.gather_rows(part, 4) is part
    model = torch.nn.Linear(2, 1)
    assert SINGLE.wrap(model) is model and SINGLE.device_name("cuda") == "cuda"
    with session("cuda") as dist:  # no torchrun: no process group, whatever the device
        assert dist is SINGLE


def test_rows_that_cannot_be_sharded_are_config_errors(monkeypatch):
    """A row source streamed from disk (a dataset's own `train_rows`) cannot be sharded yet;
    nor can a global batch smaller than the number of processes. The trainer refuses both
    before any collective (these run without a process group)."""
    two = Dist(rank=0, world=2, backend="gloo")
    X, y = as_tensors(*toy_data(64))
    model = build_model(resolve_model_options({"name": "mlp", "embedding_dim": 4}), toy_fields())
    with pytest.raises(ConfigError, match="cannot be sharded"):
        Trainer(model, TrainConfig(), dist=two).fit(TensorRows(X, y), None, X, y)
    with pytest.raises(ConfigError, match="train.batch_size 1 .* at least 2"):
        Trainer(model, TrainConfig(batch_size=1), dist=two).fit(X, y, X, y)


def test_only_gprec_train_trains_under_torchrun(monkeypatch, tmp_path):
    """compare, experiments and the Python API without a `Dist` are refused in a process
    torchrun started: every process would train every run and write the same files."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="only `gprec train` trains with several processes"):
        run_training(parse_config({}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


# -- every parameter gets a gradient (DDP, find_unused_parameters=False) --------------------

FIELDS = ML_FIELDS  # MovieLens-like: a partition field (gender) and a group field for DMTL
WRAPPERS = ("gprec", "apg", "star", "pepnet", "dgpm")  # around any backbone (model.backbone)
# Options that change which modules exist, beyond each bool / choice one at a time:
EXTRA = {
    "dcnv2": [{"low_rank": 4}, {"low_rank": 4, "n_experts": 2}, {"stacked_units": [8]},
              {"structure": "stacked_parallel", "stacked_units": [8]}],
    "apg": [{"overparam_dim": None}, {"share_uv": False, "overparam_dim": None},
            {"condition_fields": ["age", "gender"]}],
    "ple": [{"n_levels": 2}, {"partition_field": "gender"}],
    "mmoe": [{"partition_field": "gender"}],
    "dgpm": [{"rank": None}, {"group_dim": 4}],
    "pepnet": [{"gate_units": None}, {"partition_field": "gender"}, {"prior_fields": ["age"]}],
    "dmtl": [{"profile_units": [8]}],
    "star": [{"aux_fields": ["age"]}, {"partition_field": "gender"}],
    # the ablations (experiments/ablation.py) and the variants under every strategy
    "gprec": [{"strategy": s, **v} for s in ("input", "dynamic", "ensemble") for v in (
        {"group_embedding": "single"}, {"individual": False}, {"lambda_group": 0.0},
        {"lambda_contrastive": 0.0}, {"lambda_orthogonal": 0.0},
        {"lambda_group": 0.0, "lambda_contrastive": 0.0}, {"group_reduce": "sum"},
        {"orthogonal": "signed"}, {"backbone_aux_loss": True}, {"dedup_users": False},
        {"classifier": "shared"}, {"input_scale": "zero"},
    )],
}  # fmt: skip


def option_variants(name: str) -> list[dict]:
    """The defaults, then each bool flipped and each other choice of a Literal option (the
    activation aside: it changes no parameter), then EXTRA; a wrapper around every backbone."""
    out: list[dict] = [{}]
    for key, f in model_class(name).Options.model_fields.items():
        if key == "activation":
            continue
        if f.annotation is bool:
            out.append({key: not f.default})
        elif typing.get_origin(f.annotation) is typing.Literal:
            out += [{key: v} for v in typing.get_args(f.annotation) if v != f.default]
    out += EXTRA.get(name, [])
    if name in WRAPPERS:
        strategies = ("input", "dynamic", "ensemble") if name == "gprec" else (None,)
        for b in available_models(Backbone):
            for s in strategies:
                out.append({"backbone": {"name": b}, **({"strategy": s} if s else {})})
    return out


CASES = [(n, v) for n in available_models() for v in option_variants(n)]


def case_id(case) -> str:
    name, v = case
    return name + "".join(
        f"-{k}={v[k]['name'] if k == 'backbone' else v[k]}".replace(" ", "") for k in v
    )


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_every_parameter_gets_a_gradient(case):
    name, options = case
    torch.manual_seed(0)
    small = {"n_groups": 3} if name in ("gprec", "dgpm") else {}
    try:
        resolved = resolve_model_options({"name": name, "embedding_dim": 4, **small, **options})
        model = build_model(resolved, FIELDS)
    except (ConfigError, ValidationError) as e:  # a combination the model refuses at config time
        pytest.skip(f"not a valid config: {str(e).splitlines()[0][:120]}")
    rng = np.random.default_rng(0)
    x = torch.from_numpy(np.stack([rng.integers(1, f.cardinality, 64) for f in FIELDS], 1))
    y = torch.from_numpy((rng.random(64) < 0.5).astype(np.float32))
    out = model.train()(x, y)
    (F.binary_cross_entropy_with_logits(out.logit, y) + sum(out.aux_losses.values())).backward()
    missing = [k for k, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == [], f"parameters without a gradient: {missing}"


def test_the_cases_cover_every_model_and_gprec_strategy():
    assert {n for n, _ in CASES} == set(available_models())
    strategies = {v.get("strategy", "input") for n, v in CASES if n == "gprec"}
    assert strategies == {"input", "dynamic", "ensemble"}


# -- two processes under torchrun ----------------------------------------------------------
#
# Two launches: `torchrun -m gprec train` itself (the acceptance run), and one that runs the
# other scenarios one after the other in the same two processes (`SCENARIOS`: each a `gprec
# train` through `main`, as `-m gprec` calls it), which spares a launch (seconds of imports) each.


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 3,200 training rows: 12 batches of 256 and a last one of 128 an epoch
    return write_ml100k(
        tmp_path_factory.mktemp("ml") / "ml-100k", n_users=100, n_items=60, n_ratings=4000
    )


def args_for(data, out, config="mlp.yaml", *sets):
    return [
        "train", "-c", str(CONFIGS / config), "--set", f"data.path={data}",
        "--set", f"data.cache_dir={data.parent / 'cache'}", "--set", "train.batch_size=256",
        "--set", "train.max_epochs=5", "--set", "train.patience=3", "--set", "train.threads=1",
        "--set", "train.progress=false", *[a for s in sets for a in ("--set", s)],
        "--out", str(out),
    ]  # fmt: skip


def torchrun(args, script=None, timeout=300) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 -m gprec ARGS` (or a script), one thread per
    process."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    target = [str(script)] if script else ["-m", "gprec"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *target, *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def log_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def acceptance(data, tmp_path_factory):
    """The MLP (binary) trained by one process (this one) and by two (`torchrun -m gprec`):
    (one, two, torchrun's result)."""
    root = tmp_path_factory.mktemp("mlp")
    one, two = root / "one", root / "two"
    assert main(args_for(data, one)) == 0
    done = torchrun(args_for(data, two))
    assert done.returncode == 0, done.stderr[-3000:]
    return one, two, done


# Two processes take the one-process steps (equal parts of the same global batches, gradients
# averaged): the same updates but for the order of float sums. Measured on this data: the AUC
# equal to the last bit, LogLoss 2e-9 apart (RMSE 3e-9 for regression).
TOLERANCE = 1e-5


def test_two_processes_match_one_process(acceptance):
    one, two, _ = acceptance
    a, b = metrics(one), metrics(two)
    assert a["epochs_run"] == b["epochs_run"]
    assert a["valid"]["best_epoch"] == b["valid"]["best_epoch"]
    for split in ("test", "valid"):
        for k in ("auc", "logloss"):
            assert abs(a[split][k] - b[split][k]) <= TOLERANCE, (split, k, a[split], b[split])
    for la, lb in zip(log_lines(one), log_lines(two), strict=True):
        assert abs(la["train_bce"] - lb["train_bce"]) <= TOLERANCE
        assert abs(la["valid_auc"] - lb["valid_auc"]) <= TOLERANCE
    assert a["environment"]["world_size"] == 1 and "backend" not in a["environment"]
    env = b["environment"]
    assert env["world_size"] == 2 and env["backend"] == "gloo" and env["threads"] == 1


def test_only_rank_0_writes_and_speaks(acceptance):
    one, two, done = acceptance
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert not (two / RESUME).exists()
    assert len(log_lines(two)) == metrics(two)["epochs_run"]  # one line an epoch, not one a rank
    assert [line for line in done.stdout.splitlines() if line.startswith("test ")] == [
        done.stdout.strip()
    ]
    epochs = [line for line in done.stderr.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == metrics(two)["epochs_run"]
    assert done.stderr.count("training mlp on ml-100k") == 1
    assert done.stderr.count("duplicate interaction rows") == 1  # the data's warning, once
    state = torch.load(two / "model.pt", weights_only=True)["state_dict"]
    assert not any(k.startswith("module.") for k in state)  # the model's own names, not DDP's
    # ...so the run loads back as any run does, and predicts as the one-process run does
    a, b = load_run(one), load_run(two)
    rows = np.stack([np.arange(8) % f.cardinality for f in b.fields], 1)
    np.testing.assert_allclose(a.predict(rows), b.predict(rows), rtol=0, atol=TOLERANCE)
    assert json.loads((two / "status.json").read_text())["state"] == "finished"


# In each of the two processes: every scenario's `main(args)` (a training step raising
# KeyboardInterrupt from epoch `stop` on, as Ctrl-C would), its exit code and output kept per
# rank in results-RANK.json. The scenarios share one process group: created by the first
# `session`, kept by the others (a default group created again after its destruction can read
# the store's keys of the last one, under torchrun's shared store).
SCENARIOS = """
import contextlib, errno, io, json, os, sys
import torch
import torch.distributed as td
import gprec.training.run as run
import gprec.training.trainer as trainer
from gprec.cli.main import main

init, destroy = td.init_process_group, td.destroy_process_group
td.init_process_group = lambda *a, **k: None if td.is_initialized() else init(*a, **k)
td.destroy_process_group = lambda *a, **k: None
plan, results = json.loads(open(sys.argv[1]).read()), {}
real, real_build = trainer.Trainer._train_epoch, run.build_model
for label, args, stop in plan:
    run.build_model = real_build
    def epoch(self, rows, optimizer, generator, epoch, model=None, stop=stop):
        if stop and epoch >= stop:
            raise KeyboardInterrupt
        return real(self, rows, optimizer, generator, epoch, model)
    trainer.Trainer._train_epoch = epoch
    if label == "unused":  # a model with a parameter its forward never reads
        def with_unused(*a, **k):
            model = real_build(*a, **k)
            model.register_parameter("never_read", torch.nn.Parameter(torch.zeros(3)))
            return model
        run.build_model = with_unused
    if label == "disk full" and os.environ["RANK"] == "0":  # rank 0 alone fails: a write
        def full(*a, **k):
            raise OSError(errno.ENOSPC, "No space left on device")
        run.write_catalogue = full
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    results[label] = {"code": code, "out": out.getvalue(), "err": err.getvalue()}
destroy()
open(os.path.join(os.path.dirname(sys.argv[1]), f"results-{os.environ['RANK']}.json"), "w").write(
    json.dumps(results)
)
"""
# GPRec draws Gumbel noise for each row: each process draws its own (seeded per rank), so two
# processes train on other noise than one, as another seed would (its auxiliary losses are means
# over rows: the shares weigh them exactly). Measured here: AUC 5e-4, LogLoss 2e-3 apart.
GPREC = ("gprec-dynamic.yaml", "model.n_groups=4")
GPREC_TOLERANCE = 0.02
REGRESSION = ("mlp.yaml", "train.task=regression", "data.target=value")


def write_parquet(directory: Path) -> list[str]:
    """Interactions in Parquet with a schema; the settings that stream them from disk
    (data.format: parquet-stream, docs/streaming.md)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True)
    users, items = rng.integers(1, 50, 1000), rng.integers(1, 30, 1000)
    table = pa.table({"user": users, "item": items, "stars": rng.integers(1, 6, 1000)})
    pq.write_table(table, directory / "log.parquet")
    schema = directory / "schema.yaml"
    schema.write_text(
        "interactions: log.parquet\ntarget: stars\nfields: {user: personal, item: item}\n"
    )
    return ["data.source=generic", f"data.path={schema}", "data.format=parquet-stream",
            "data.split=hash", "data.label_threshold=3",
            f"data.cache_dir={directory / 'cache'}"]  # fmt: skip


@pytest.fixture(scope="module")
def scenarios(data, tmp_path_factory):
    """One torchrun launch of SCENARIOS; one-process runs of the same configs in this process.
    Gives the root directory (one process's runs under one/, two processes' under two/) and
    each scenario's results per rank."""
    root = tmp_path_factory.mktemp("scenarios")
    refused = root / "two" / "refused"
    refused.mkdir(parents=True)
    (refused / "notes.txt").write_text("mine")
    streamed = write_parquet(root / "parquet")
    plan = [
        ("refused", args_for(data, refused), None),
        ("streamed", args_for(data, root / "two" / "streamed", "mlp.yaml", *streamed), None),
        ("regression", args_for(data, root / "two" / "regression", *REGRESSION), None),
        ("gprec", args_for(data, root / "two" / "gprec", *GPREC), None),
        # interrupted at the start of epoch 3 (checkpoint: epoch 2), then the same command
        ("stopped", args_for(data, root / "two" / "stopped", *GPREC), 3),
        ("resumed", args_for(data, root / "two" / "stopped", *GPREC), None),
        # interrupted, left for one process to find
        ("left", args_for(data, root / "two" / "left", *GPREC), 3),
    ]
    if not torch.cuda.is_available():
        cuda = args_for(data, root / "two" / "cuda", "mlp.yaml", "train.device=cuda")
        plan.append(("cuda", cuda, None))
    # a model that leaves a parameter without a gradient (the script adds one): every process
    # stops; then the real build again
    plan.append(("unused", args_for(data, root / "two" / "unused", "mlp.yaml"), None))
    # last: rank 0 stops alone (disk full), which ends the process group
    plan.append(("disk full", args_for(data, root / "two" / "full"), None))
    (root / "plan.json").write_text(json.dumps(plan))
    (root / "scenarios.py").write_text(SCENARIOS)
    done = torchrun([str(root / "plan.json")], script=root / "scenarios.py")
    assert done.returncode == 0, done.stderr[-3000:]
    for label, config in (("regression", REGRESSION), ("gprec", GPREC)):
        assert main(args_for(data, root / "one" / label, *config)) == 0
    ranks = [json.loads((root / f"results-{r}.json").read_text()) for r in (0, 1)]
    return root, {label: [r[label] for r in ranks] for label, _, _ in plan}


def test_regression_with_two_processes_matches_one(scenarios):
    root, results = scenarios
    assert [r["code"] for r in results["regression"]] == [0, 0]
    a, b = metrics(root / "one" / "regression"), metrics(root / "two" / "regression")
    assert a["epochs_run"] == b["epochs_run"]
    for k in ("rmse", "mae"):
        assert abs(a["test"][k] - b["test"][k]) <= TOLERANCE, (k, a["test"], b["test"])


def test_gprec_with_two_processes_is_close_to_one(scenarios):
    root, results = scenarios
    assert [r["code"] for r in results["gprec"]] == [0, 0]
    a, b = metrics(root / "one" / "gprec"), metrics(root / "two" / "gprec")
    for k in ("auc", "logloss"):
        assert abs(a["test"][k] - b["test"][k]) <= GPREC_TOLERANCE, (k, a["test"], b["test"])


def test_an_interrupted_two_process_run_resumes_to_the_same_bits(scenarios):
    """Ctrl-C in epoch 3, then the same command: it resumes after epoch 2 (every process its own
    random states: GPRec's noise) and ends with the bits of the uninterrupted run."""
    root, results = scenarios
    assert [r["code"] for r in results["stopped"]] == [130, 130]
    assert [r["code"] for r in results["resumed"]] == [0, 0]
    assert "resuming after epoch 2" in results["resumed"][0]["err"]
    assert results["resumed"][1]["err"] == ""  # rank 1 says nothing
    reference, out = root / "two" / "gprec", root / "two" / "stopped"
    a, b = metrics(reference), metrics(out)
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    assert a["epochs_run"] == b["epochs_run"]
    sa, sb = (torch.load(d / "model.pt", weights_only=True)["state_dict"] for d in (reference, out))
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    drop = ("seconds", "samples_per_second")
    assert [{k: v for k, v in r.items() if k not in drop} for r in log_lines(reference)] == [
        {k: v for k, v in r.items() if k not in drop} for r in log_lines(out)
    ]
    assert metrics(out)["environment"]["world_size"] == 2


def test_one_process_does_not_resume_a_two_process_checkpoint(scenarios, data, tmp_path, capsys):
    """Another number of processes trains other parts of the batches (and draws other noise):
    --resume refuses, and without it the run trains again from scratch, saying why."""
    root, _ = scenarios
    out = tmp_path / "run"
    shutil.copytree(root / "two" / "left", out)
    assert json.loads((out / "status.json").read_text())["state"] == "interrupted"
    assert torch.load(out / RESUME, weights_only=True)["epoch"] == 2
    args = args_for(data, out, *GPREC)
    assert main([*args, "--resume"]) == 2
    assert "was written by 2 process(es), this run has 1" in capsys.readouterr().err
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "again from scratch" in err and "was written by 2 process(es)" in err
    assert metrics(out)["test"] == metrics(root / "one" / "gprec")["test"]


def test_a_refused_run_directory_is_reported_once(scenarios):
    """Rank 0 decides about the run directory; its refusal is one line, not one per process."""
    root, results = scenarios
    assert [r["code"] for r in results["refused"]] == [2, 2]
    said = results["refused"][0]["err"] + results["refused"][1]["err"]
    assert said.count("gprec: error:") == 1 and "is not a gprec run directory" in said
    assert sorted(p.name for p in (root / "two" / "refused").iterdir()) == ["notes.txt"]


def test_rows_streamed_from_disk_are_refused_once(scenarios):
    root, results = scenarios
    assert [r["code"] for r in results["streamed"]] == [2, 2]
    said = results["streamed"][0]["err"] + results["streamed"][1]["err"]
    assert said.count("gprec: error:") == 1
    assert "data.format parquet-stream streams the training rows from disk" in said
    assert not (root / "two" / "streamed").exists()
    assert not (root / "parquet" / "cache").exists()  # refused before reading the data


def test_cuda_without_a_gpu_under_torchrun_is_an_error_before_any_write(scenarios):
    root, results = scenarios
    if "cuda" not in results:
        pytest.skip("this machine has a GPU")
    assert [r["code"] for r in results["cuda"]] == [2, 2]
    message = "gprec: error: train.device is 'cuda', but torch sees no CUDA device here"
    assert all(message in r["err"] for r in results["cuda"])  # each process finds it itself
    assert not (root / "two" / "cuda").exists()


def test_parameters_without_a_gradient_are_named_not_a_ddp_traceback(scenarios):
    """DDP would fail at the second step with a message naming no parameter; the first step
    names them."""
    _, results = scenarios
    for r in results["unused"]:
        assert r["code"] == 2
        assert "needs a gradient for every trainable parameter" in r["err"]
        assert "never_read" in r["err"] and "Traceback" not in r["err"]


def test_rank_0_failing_alone_is_reported_by_it_and_one_line_from_the_other(scenarios):
    """Rank 0 fails where the others do not wait for its decision (a write): it reports the error
    and marks the run failed; the others, left waiting, say in one line that they lost it."""
    root, results = scenarios
    zero, one = results["disk full"]
    assert zero["code"] == 2 and zero["err"].strip().splitlines()[-1] == (
        "gprec: error: No space left on device"
    )
    assert one["code"] == 2 and one["err"].strip() == (
        "gprec: error: process 1 lost its connection to the others: one of them stopped "
        "(see its message)"
    )
    assert json.loads((root / "two" / "full" / "status.json").read_text())["state"] == "failed"
