"""A run directory loads back into a model whose predictions reproduce the run's metrics
(training/load.py), and a directory that is not a finished run is one clear error."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_ml100k
from gprec.cli.main import main
from gprec.data.dataset import load_dataset
from gprec.errors import ConfigError
from gprec.evaluation.metrics import ctr_metrics, regression_metrics
from gprec.training.load import load_run
from gprec.training.run_dir import write_status

ML100K_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "ml-100k" / "mlp.yaml"


def train(tmp_path, name, *sets):
    data = tmp_path / "ml-100k"
    if not data.exists():
        write_ml100k(data, n_ratings=1500)
    out = tmp_path / name
    args = [
        "train", "-c", str(ML100K_CONFIG), "--set", f"data.path={data}",
        "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.max_epochs=3",
        "--set", "train.progress=false", *[a for s in sets for a in ("--set", s)], "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    return out


@pytest.mark.parametrize(
    "sets, metrics",
    [
        ((), ctr_metrics),
        (("model.name=gprec", "model.n_groups=3", "model.strategy=dynamic"), ctr_metrics),
        (("train.task=regression", "data.target=value"), regression_metrics),
    ],
)
def test_a_loaded_run_reproduces_its_test_metrics(tmp_path, sets, metrics):
    out = train(tmp_path, "run", *sets)
    run = load_run(out)
    assert not run.model.training and run.fields
    data = load_dataset(run.config.data, run.config.split_seed())
    pred = run.predict(data.X["test"])
    assert np.array_equal(pred, run.predict(data.X["test"]))  # deterministic in eval mode
    recorded = json.loads((out / "metrics.json").read_text())["test"]
    # bit-identical: the metrics recomputed from the reloaded model equal the recorded ones exactly
    assert metrics(data.y["test"], pred) == recorded


def test_what_is_not_a_finished_run_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no such run directory"):
        load_run(tmp_path / "nope")
    out = train(tmp_path, "run")
    metrics = (out / "metrics.json").read_text()
    (out / "metrics.json").unlink()
    write_status(out, "failed", error="boom")
    with pytest.raises(ConfigError, match=r"not a finished run \(status: failed\)"):
        load_run(out)
    write_status(out, "finished")
    (out / "metrics.json").write_text(metrics)
    (out / "vocab.json").unlink()
    with pytest.raises(ConfigError, match="vocab.json missing; not a complete run"):
        load_run(out)
    (out / "vocab.json").write_text("{not json")
    with pytest.raises(ConfigError, match="vocab.json: cannot be read"):
        load_run(out)
    (out / "vocab.json").write_text("{}")
    for damaged in (b"", b"garbage", None):
        if damaged is None:
            torch.save({"state_dict": {}}, out / "model.pt")
        else:
            (out / "model.pt").write_bytes(damaged)
        with pytest.raises(ConfigError, match="model.pt: cannot be loaded"):
            load_run(out)
    (out / "metrics.json").unlink()  # finished means metrics written, as for run_state
    with pytest.raises(ConfigError, match="not a finished run"):
        load_run(out)
