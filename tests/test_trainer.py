import json
import os

import numpy as np
import torch

from conftest import toy_data, toy_fields
from gprec.config import TrainConfig, parse_config
from gprec.models.registry import build_model
from gprec.training.trainer import Trainer, as_tensors, iterate_batches, seed_everything


def _fit(tmp_path=None, seed=3, **train):
    X, y = toy_data(3000)
    seed_everything(seed)
    model = build_model(parse_config({}).model, toy_fields())
    cfg = TrainConfig(
        seed=seed, batch_size=256, max_epochs=train.pop("max_epochs", 6), progress=False, **train
    )
    trainer = Trainer(model, cfg, tmp_path, log=lambda m: None)
    result = trainer.fit(*as_tensors(X[:2400], y[:2400]), *as_tensors(X[2400:], y[2400:]))
    return model, trainer, result


def test_batches_cover_every_row_once_in_a_seeded_order():
    X, y = torch.arange(10).view(10, 1), torch.arange(10).float()
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = torch.cat([xb for xb, _ in iterate_batches(X, y, 3, g1)]).flatten()
    b = torch.cat([xb for xb, _ in iterate_batches(X, y, 3, g2)]).flatten()
    assert (
        torch.equal(a, b)
        and sorted(a.tolist()) == list(range(10))
        and not torch.equal(a, X.flatten())
    )
    batches = list(iterate_batches(X, y, 4))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert all(torch.equal(xb.flatten().float(), yb) for xb, yb in batches)


def test_training_is_deterministic_for_a_seed():
    m1, _, r1 = _fit(seed=5)
    m2, _, r2 = _fit(seed=5)
    _, _, r3 = _fit(seed=6)
    assert r1.best_valid == r2.best_valid
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert r1.best_valid != r3.best_valid


def test_mlp_learns_and_keeps_best_checkpoint(tmp_path):
    model, trainer, result = _fit(tmp_path, max_epochs=30, lr=0.01)
    assert result.best_valid["auc"] > 0.75
    ckpt = torch.load(tmp_path / "model.pt")
    best_epoch_auc = max(h["valid_auc"] for h in result.history)
    assert result.best_valid["auc"] == best_epoch_auc
    restored = build_model(parse_config({}).model, toy_fields())
    restored.load_state_dict(ckpt["state_dict"])
    X, y = toy_data(3000)
    Xv, yv = as_tensors(X[2400:], y[2400:])
    assert np.isclose(trainer.evaluate(Xv, yv)["auc"], best_epoch_auc)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == result.epochs_run and "valid_auc" in json.loads(lines[0])
    assert not list(tmp_path.glob(".model.pt.*"))  # no temp files left
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "model.pt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_early_stopping_respects_patience():
    _, _, result = _fit(max_epochs=50, patience=2, lr=0.05)
    assert result.epochs_run < 50
    assert result.epochs_run == result.best_epoch + 2


def test_bf16_precision_trains_in_bfloat16_and_keeps_float32_weights(monkeypatch):
    """`train.precision: bf16` runs the forward matmuls in bfloat16 under autocast; the weights,
    the optimizer and evaluation stay float32, and the model learns as well as in float32."""
    seen = []
    real_linear = torch.nn.functional.linear

    def spy(x, *args, **kwargs):
        out = real_linear(x, *args, **kwargs)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.functional, "linear", spy)
    model, trainer, result = _fit(max_epochs=20, lr=0.01, precision="bf16")
    trained_dtypes = set(seen)
    assert torch.bfloat16 in trained_dtypes
    assert all(p.dtype == torch.float32 for p in model.parameters())
    seen.clear()
    X, y = toy_data(3000)
    trainer.evaluate(*as_tensors(X[2400:], y[2400:]))
    assert set(seen) == {torch.float32}  # evaluation is never autocast
    _, _, fp32 = _fit(max_epochs=20, lr=0.01)
    assert result.best_valid["auc"] > 0.75
    assert abs(result.best_valid["auc"] - fp32.best_valid["auc"]) < 0.01
