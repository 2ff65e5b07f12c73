"""A finished `gprec groups train` run back as a scorer, without the data it was trained on."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from gprec.data.schema import EncodedField, Role
from gprec.errors import ConfigError
from gprec.groups.data import GroupTables
from gprec.groups.scoring import GroupScorer
from gprec.groups.train import INDEX, GroupRunConfig
from gprec.models.registry import build_model
from gprec.training.run_dir import CONFIG, require_finished_run


@dataclass
class GroupRun:
    path: Path
    config: GroupRunConfig
    model: torch.nn.Module
    tables: GroupTables
    offset: float
    seen: np.ndarray  # (n_groups, n_items) bool: the group's training-file items
    group_ids: np.ndarray  # raw ids as strings, by code
    user_ids: np.ndarray
    item_ids: np.ndarray

    def scorer(self, method: str | None = None) -> GroupScorer:
        return GroupScorer(self.model, self.tables, method or self.config.train.score, self.offset)

    def group_code(self, raw: str) -> int:
        hit = np.flatnonzero(self.group_ids == str(raw))
        if len(hit) == 0:
            raise ConfigError(
                f"{self.path}: no group with id {raw!r} (ids range over "
                f"{self.group_ids[0]}..{self.group_ids[-1]}, {len(self.group_ids)} groups)"
            )
        return int(hit[0])


def load_group_run(run_dir: str | Path) -> GroupRun:
    """The finished group run in `run_dir`; one `ConfigError` line naming what is wrong."""
    run_dir = require_finished_run(run_dir)
    missing = [f for f in (CONFIG, "model.pt", INDEX) if not (run_dir / f).is_file()]
    if missing:
        what = "a gprec groups train run" if INDEX in missing else "a complete run"
        raise ConfigError(f"{run_dir}: {', '.join(missing)} missing; not {what}")
    try:
        config = GroupRunConfig.model_validate(yaml.safe_load((run_dir / CONFIG).read_text()))
        ckpt = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
        fields = [
            EncodedField(f["name"], Role(f["role"]), int(f["cardinality"])) for f in ckpt["fields"]
        ]
        model = build_model(config.model, fields)
        model.load_state_dict(ckpt["state_dict"])
        with np.load(run_dir / INDEX, allow_pickle=False) as z:
            index = {k: z[k] for k in z.files}
        tables = GroupTables(
            fields=fields,
            user_x=torch.from_numpy(index["user_x"]),
            item_col=int(ckpt["item_col"]),
            group_col=None if ckpt["group_col"] is None else int(ckpt["group_col"]),
            member_offsets=index["member_offsets"],
            member_users=index["member_users"],
            user_group_offsets=index["user_group_offsets"],
            user_group_list=index["user_group_list"],
            n_items=len(index["item_ids"]),
        )
        seen = np.zeros((tables.n_groups, tables.n_items), bool)
        seen[index["seen_group"], index["seen_item"]] = True
        offset = float(ckpt["offset"])
        ids = {kind: index[f"{kind}_ids"] for kind in ("group", "user", "item")}
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, EOFError, IndexError,
            pickle.UnpicklingError, zipfile.BadZipFile, yaml.YAMLError) as e:  # fmt: skip
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{run_dir}: cannot be loaded ({first})") from None
    model.eval()
    return GroupRun(
        path=run_dir,
        config=config,
        model=model,
        tables=tables,
        offset=offset,
        seen=seen,
        group_ids=ids["group"],
        user_ids=ids["user"],
        item_ids=ids["item"],
    )
