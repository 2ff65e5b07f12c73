"""A finished GPRec run, its training users and its untrained twin: what the group inspections
read. Loading goes through `load_run`, the data through `load_dataset` with the run's own data
config and split seed (the cache when it is there); nothing here encodes anything itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gprec.data.dataset import EncodedDataset
from gprec.errors import ConfigError
from gprec.training.load import LoadedRun, load_run, run_data  # noqa: F401 (run_data: re-exported)


def load_gprec_run(run_dir: str | Path, command: str) -> LoadedRun:
    """The finished run in `run_dir`, which must be a GPRec one; one `ConfigError` line
    otherwise (`command` names what needs it)."""
    from gprec.models.gprec import GPRec

    run = load_run(run_dir)
    if not isinstance(run.model, GPRec):
        name = run.config.model.get("name", "?")
        raise ConfigError(
            f"{run.path}: a '{name}' run, not GPRec: {command} needs a run with learned groups "
            "(model.name: gprec)"
        )
    return run


@dataclass
class TrainingUsers:
    """The distinct users of a run's training rows and the rows themselves.

    A user is a distinct row of the group classifier's input columns (`columns`: the personal
    fields, then the other user fields, as `GPRec.user_columns`); with a personal field (a user
    id) that is one per user. `row_user[r]` is training row `r`'s user."""

    columns: list[int]
    values: np.ndarray  # (n_users, len(columns)) encoded
    row_user: np.ndarray  # (n_rows,)
    X: np.ndarray  # (n_rows, n_fields) the training rows
    y: np.ndarray  # (n_rows,) their labels

    def __len__(self) -> int:
        return len(self.values)


def training_users(run: LoadedRun, data: EncodedDataset) -> TrainingUsers:
    columns = run.model.user_columns
    X, y = np.asarray(data.X["train"]), np.asarray(data.y["train"])
    values, row_user = np.unique(X[:, columns], axis=0, return_inverse=True)
    return TrainingUsers(columns, values, row_user.reshape(-1), X, y)


def user_masks(model: torch.nn.Module, users: np.ndarray, batch_size: int = 65536) -> np.ndarray:
    """Noiseless membership probabilities `(n_users, G)` of encoded user columns."""
    out = []
    for start in range(0, len(users), batch_size):
        u = torch.as_tensor(np.ascontiguousarray(users[start : start + batch_size]))
        out.append(model.user_group_masks(u).float().cpu().numpy())
    if not out:
        return np.zeros((0, model.n_groups), dtype=np.float32)
    return np.concatenate(out)


def untrained_model(run: LoadedRun) -> torch.nn.Module:
    """The run's model as training built it, before any step: the same config, fields and
    `train.seed` (seeded as `run_training` seeds it), in evaluation mode. The global random
    state is left as it was."""
    from gprec.models.registry import build_model
    from gprec.training.trainer import seed_everything

    np_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            seed_everything(run.config.train.seed)
            model = build_model(run.config.model, run.fields)
    finally:
        np.random.set_state(np_state)
    return model.eval()


def default_out(run_dir: str | Path) -> Path:
    """Where the inspections write by default: `RUN_DIR-groups` beside the run (a run directory
    holds only what training wrote, so that `--overwrite` may replace it whole)."""
    run_dir = Path(run_dir).resolve()
    return run_dir.with_name(f"{run_dir.name}-groups")


def check_out(out: Path, run_dir: str | Path) -> None:
    """Refuse writing into the run directory itself."""
    if Path(out).resolve() == Path(run_dir).resolve():
        raise ConfigError(
            f"--out {out} is the run directory: it holds only what training wrote; pick another"
        )
