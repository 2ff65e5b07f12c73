"""FuxiCTR 2.3.10's own models for gprec's eight backbones, trained FuxiCTR's way, so that
`zoo_speed.py --fuxictr` measures them in the same run (issue 17).

FuxiCTR is not a dependency of gprec: this file is imported only by `zoo_speed.py --fuxictr`,
from a separate environment (benchmarks/README.md, zoo_speed section, has the setup lines).
FuxiCTR's wheel ships its library (`fuxictr`: layers, `BaseModel`, loaders) but not the
`model_zoo` classes; those are imported from a FuxiCTR checkout's `model_zoo` directory
(`--fuxictr-zoo DIR`), each model's `src` package loaded on its own, under a private module
name, so nothing of FuxiCTR is copied here and its `model_zoo/__init__.py` (which imports every
model of the zoo) is not run. For these eight models the code at tag v2.3.9 equals that of
2.3.10 (untagged) but for docstrings.

What is FuxiCTR's, used as it is:
- the model classes (`MODELS`), built with the settings issue 17 lists (`SETTINGS`, `COMMON`):
  embedding 16, Adam lr 0.002, `embedding_regularizer` = `net_regularizer` = 1e-6 (FuxiCTR's
  L2 `1e-6 / 2 * ||W||^2` per parameter, whose gradient `1e-6 W` is our Adam weight decay
  1e-6), no dropout, no batch norm, MLP towers [64, 32, 16]; each class's `__init__` runs
  `compile` (its optimizer: `torch.optim.Adam(params, lr)`, its loss: BCE on the sigmoid
  output) and `reset_parameters`;
- one training step is the model's own `train_step` (zero_grad, forward, `compute_loss` with
  its regularization, backward, `clip_grad_norm_` at `fit`'s default 10, optimizer step), and an
  epoch is `BaseModel.train_epoch`'s loop without its evaluation (`loss.item()` every step);
- feeding (`Feeding.LOADER`): `RankDataLoader` over an npz file of the same training rows
  (`NpzDataLoader`: the whole file in memory as one `np.column_stack`ed array, a `Dataset`
  indexed row by row, `DataLoader(batch_size=4096, shuffle=True)` with FuxiCTR's
  `BatchCollator` making a dict of columns), as its users run it, with `num_workers=0` by
  default: the loader works in the timed process, at 1 torch thread like ours (FuxiCTR's
  configs set `num_workers: 3`, worker processes on other cores).

What is ours: the FeatureMap, built from gprec's encoded fields (one categorical feature per
field, `vocab_size` = its cardinality, `padding_idx` 0 as FuxiCTR's FeatureProcessor writes it)
so both libraries see the same features and rows; and the second feeding, `Feeding.TENSORS`:
the model fed dicts of column tensors (int64 features, float32 label) cut from a random
permutation before the epoch's timer starts, without FuxiCTR's loader, so the difference
between the two is what the loader costs.
"""

from __future__ import annotations

import enum
import importlib.util
import inspect
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from fuxictr import __version__ as FUXICTR_INSTALLED
from fuxictr.features import FeatureMap
from fuxictr.pytorch.dataloaders import RankDataLoader
from fuxictr.pytorch.models import BaseModel
from fuxictr.pytorch.torch_utils import seed_everything

FUXICTR_VERSION = "2.3.10"
LABEL = "label"
BATCH_SIZE = 4096
MAX_GRADIENT_NORM = 10.0  # BaseModel.fit's default, which train_step reads
# gprec backbone -> (the model's `src` package under model_zoo/, FuxiCTR's class there)
MODELS = {
    "mlp": ("DNN/DNN_torch/src", "DNN"),
    "deepfm": ("DeepFM/DeepFM_torch/src", "DeepFM"),
    "dcn": ("DCN/DCN_torch/src", "DCN"),
    "dcnv2": ("DCNv2/src", "DCNv2"),
    "gdcn": ("GDCN/src", "GDCN"),  # FuxiCTR's GDCN is the stacked form (the paper's GDCN-S)
    "finalmlp": ("FinalMLP/src", "FinalMLP"),
    "destine": ("DESTINE/src", "DESTINE"),
    "autoint": ("AutoInt/src", "AutoInt"),  # AutoInt+ with use_wide and a DNN
}
TOWER = [64, 32, 16]
# Issue 17's settings, every one passed explicitly (several class defaults differ: DESTINE's
# dropouts are 0.1, DCN's tower is empty); names checked against each class's signature.
SETTINGS = {
    "mlp": {
        "hidden_units": TOWER,
        "hidden_activations": "ReLU",
        "net_dropout": 0,
        "batch_norm": False,
    },
    "deepfm": {
        "hidden_units": TOWER,
        "hidden_activations": "ReLU",
        "net_dropout": 0,
        "batch_norm": False,
    },
    "dcn": {
        "dnn_hidden_units": TOWER,
        "dnn_activations": "ReLU",
        "num_cross_layers": 3,
        "net_dropout": 0,
        "batch_norm": False,
    },
    "dcnv2": {
        "model_structure": "parallel",
        "use_low_rank_mixture": False,
        "num_cross_layers": 5,
        "parallel_dnn_hidden_units": TOWER,
        "stacked_dnn_hidden_units": [],
        "dnn_activations": "ReLU",
        "net_dropout": 0,
        "batch_norm": False,
    },
    "gdcn": {
        "dnn_hidden_units": TOWER,
        "dnn_activations": "ReLU",
        "num_cross_layers": 3,
        "net_dropout": 0,
        "batch_norm": False,
    },
    "finalmlp": {
        "mlp1_hidden_units": TOWER,
        "mlp1_hidden_activations": "ReLU",
        "mlp1_dropout": 0,
        "mlp1_batch_norm": False,
        "mlp2_hidden_units": TOWER,
        "mlp2_hidden_activations": "ReLU",
        "mlp2_dropout": 0,
        "mlp2_batch_norm": False,
        "use_fs": True,
        "fs_hidden_units": [800],
        "fs1_context": [],
        "fs2_context": [],
        "num_heads": 2,
    },
    "destine": {
        "attention_dim": 64,
        "attention_layers": 3,
        "num_heads": 1,
        "residual_mode": "each_layer",
        "dnn_hidden_units": TOWER,
        "dnn_activations": "ReLU",
        "use_scale": False,
        "use_wide": True,
        "relu_before_att": False,
        "net_dropout": 0,
        "att_dropout": 0,
        "batch_norm": False,
    },
    "autoint": {
        "attention_layers": 2,
        "num_heads": 4,
        "attention_dim": 128,
        "use_residual": True,
        "use_scale": True,
        "layer_norm": True,
        "use_wide": True,
        "dnn_hidden_units": TOWER,
        "dnn_activations": "ReLU",
        "net_dropout": 0,
        "batch_norm": False,
    },
}
# Passed to every model: the class signatures' common arguments, then what BaseModel reads from
# its **kwargs (optimizer, loss, verbose, model_root, metrics; nothing is saved during timing).
COMMON = {
    "gpu": -1,
    "learning_rate": 0.002,
    "embedding_dim": 16,
    "embedding_regularizer": 1e-6,
    "net_regularizer": 1e-6,
}
BASE_KWARGS = {
    "task": "binary_classification",
    "optimizer": "adam",
    "loss": "binary_crossentropy",
    "metrics": ["logloss", "AUC"],
    "verbose": 0,
}


class Feeding(enum.Enum):
    LOADER = "its loader"  # RankDataLoader / NpzDataLoader, shuffle=True
    TENSORS = "tensor batches"  # dicts of column tensors built outside the timer


def version_note() -> str | None:
    """A warning when the installed FuxiCTR is not the release issue 17 names."""
    if FUXICTR_INSTALLED != FUXICTR_VERSION:
        return f"FuxiCTR {FUXICTR_INSTALLED} is installed, not {FUXICTR_VERSION}"
    return None


def zoo_class(zoo: Path, name: str) -> type[BaseModel]:
    """FuxiCTR's model class for gprec backbone `name`, from `zoo` (a checkout's model_zoo)."""
    package, cls_name = MODELS[name]
    init = Path(zoo) / package / "__init__.py"
    if not init.is_file():
        raise FileNotFoundError(
            f"{init} not found: --fuxictr-zoo must be the model_zoo directory of a FuxiCTR "
            "checkout (git clone --branch v2.3.9 https://github.com/reczoo/FuxiCTR)"
        )
    module_name = f"_fuxictr_zoo_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            module_name, init, submodule_search_locations=[str(init.parent)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # before exec: its `from .DNN import DNN` needs it
        spec.loader.exec_module(module)
    return getattr(sys.modules[module_name], cls_name)


def feature_map(fields, embedding_dim: int = COMMON["embedding_dim"]) -> FeatureMap:
    """FuxiCTR's FeatureMap for gprec's encoded fields: one categorical feature per field."""
    fmap = FeatureMap("gprec", data_dir=tempfile.gettempdir())
    fmap.default_emb_dim = embedding_dim
    fmap.labels = [LABEL]
    for f in fields:
        fmap.features[f.name] = {
            "source": "",
            "type": "categorical",
            "padding_idx": 0,
            "vocab_size": int(f.cardinality),
        }
    fmap.num_fields = fmap.get_num_fields()
    fmap.total_features = sum(spec["vocab_size"] for spec in fmap.features.values())
    fmap.set_column_index()
    return fmap


def build_model(name: str, fmap: FeatureMap, zoo: Path, seed: int) -> BaseModel:
    """FuxiCTR's model for backbone `name` with issue 17's settings, seeded as FuxiCTR seeds."""
    cls = zoo_class(zoo, name)
    accepted = set(inspect.signature(cls.__init__).parameters)
    unknown = sorted(set(SETTINGS[name]) - accepted)
    if unknown:  # a misspelt setting would vanish into BaseModel's **kwargs unnoticed
        raise TypeError(f"FuxiCTR's {cls.__name__} takes no argument(s) {unknown}")
    seed_everything(seed)
    model = cls(
        fmap,
        model_id=f"{cls.__name__}_gprec_speed",
        model_root=tempfile.gettempdir(),
        **COMMON,
        **SETTINGS[name],
        **BASE_KWARGS,
    )
    model._max_gradient_norm = MAX_GRADIENT_NORM
    return model


def column_batches(
    fmap: FeatureMap, X: np.ndarray, y: np.ndarray, batch_size: int, order: np.ndarray | None
) -> list[dict[str, torch.Tensor]]:
    """Dicts of column tensors (int64 features, float32 label), in `order` (None: as stored)."""
    if order is not None:
        X, y = X[order], y[order]
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.int64))
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    names = list(fmap.features)
    out = []
    for start in range(0, len(yt), batch_size):
        xb = Xt[start : start + batch_size]
        batch = {n: xb[:, j].contiguous() for j, n in enumerate(names)}
        batch[LABEL] = yt[start : start + batch_size]
        out.append(batch)
    return out


def make_loader(fmap: FeatureMap, X: np.ndarray, y: np.ndarray, workers: int = 0):
    """FuxiCTR's training loader over these rows, as `RankDataLoader` makes it from an npz
    file (the file is read into memory and removed at once; one loader serves every model)."""
    with tempfile.TemporaryDirectory(prefix="gprec-fuxictr-") as tmp:
        path = str(Path(tmp) / "train.npz")
        columns = {n: np.ascontiguousarray(X[:, j]) for j, n in enumerate(fmap.features)}
        np.savez(path, **columns, **{LABEL: np.asarray(y, dtype=np.float32)})
        train_gen, _ = RankDataLoader(
            fmap,
            stage="train",
            train_data=path,
            batch_size=BATCH_SIZE,
            shuffle=True,
            data_format="npz",
            num_workers=workers,
        )
    if train_gen.num_samples != len(y):
        raise RuntimeError(f"FuxiCTR's loader holds {train_gen.num_samples} rows, not {len(y)}")
    return train_gen


class FuxiRunner:
    """One FuxiCTR model, trained epoch by epoch by its own `train_step`."""

    def __init__(
        self,
        name: str,
        model: BaseModel,
        fmap: FeatureMap,
        X: np.ndarray,
        y: np.ndarray,
        feeding: Feeding,
        loader=None,
        seed: int = 0,
    ):
        if feeding is Feeding.LOADER and loader is None:
            raise ValueError("Feeding.LOADER needs FuxiCTR's loader")
        self.name, self.model, self.fmap, self.X, self.y = name, model, fmap, X, y
        self.feeding, self.loader = feeding, loader
        self.rng = np.random.default_rng(seed)
        # The untrained model's logloss on the first batch of training rows (the sanity check's
        # reference: after the timed epochs the training logloss must be below it).
        self.first_batch_logloss = self.logloss(BATCH_SIZE)

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.feeding is Feeding.LOADER:
            return iter(self.loader)  # shuffles, gathers and collates inside the timer
        order = self.rng.permutation(len(self.y))
        return iter(column_batches(self.fmap, self.X, self.y, BATCH_SIZE, order))

    def train_epoch(self, epoch: int) -> tuple[dict[str, float], float]:
        """`BaseModel.train_epoch` without its evaluation: (mean train loss, seconds)."""
        model = self.model
        model.train()
        batches = self._batches()  # TENSORS: built here, before the timer
        total, steps = 0.0, 0
        start = time.perf_counter()
        for batch in batches:
            loss = model.train_step(batch)
            total += loss.item()  # as train_epoch does, every step
            steps += 1
        seconds = time.perf_counter() - start
        return {"loss": total / steps}, seconds

    @torch.no_grad()
    def logloss(self, rows: int | None = None, chunk: int = 65536) -> float:
        """FuxiCTR's loss without regularization (BCE of its sigmoid output) on the first
        `rows` training rows (None: all), in eval mode; not timed."""
        model = self.model
        was_training = model.training
        model.eval()
        n = len(self.y) if rows is None else min(rows, len(self.y))
        total = 0.0
        for batch in column_batches(self.fmap, self.X[:n], self.y[:n], chunk, None):
            y_true = model.get_labels(batch)
            y_pred = model.forward(batch)["y_pred"]
            total += model.loss_fn(y_pred, y_true, reduction="sum").item()
        model.train(was_training)
        return total / n
