"""Starting a model from a finished run of its backbone (`init_from`, GPRec's plug-in use).

A plug-in is added to a recommender that is already trained. `read_backbone_run` reads such a
run directory's best weights after checking that they fit: a finished run, of a bare backbone
with the same name and options, on the same encoded fields. `check_same_data` checks the data
config and split seed: a backbone trained on another split would have seen this run's
validation or test rows, and its starting point would leak them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gprec.data.schema import EncodedField
from gprec.errors import ConfigError


def _finished_run(path: str | Path) -> Path:
    from gprec.training.run_dir import require_finished_run  # training imports models

    return require_finished_run(path, "init_from: ")


def check_same_data(cfg, path: str | Path) -> None:
    """The run at `path` was trained on `cfg`'s data with its split: one `ConfigError` line
    naming the first key that differs otherwise (the cache directory may differ)."""
    from gprec.config import load_config

    run = _finished_run(path)
    theirs = load_config(run / "config.yaml").resolved().data.model_dump()
    ours = cfg.resolved().data.model_dump()
    for key in ours:
        if key != "cache_dir" and ours[key] != theirs.get(key):
            raise ConfigError(
                f"init_from: {run} was trained on other data (data.{key} is {theirs.get(key)!r} "
                f"there, {ours[key]!r} here); its weights would carry another split's rows"
            )


def read_backbone_run(
    path: str | Path, backbone: torch.nn.Module, fields: list[EncodedField]
) -> dict[str, torch.Tensor]:
    """The best weights of the finished run at `path`, checked to be a bare `backbone` (same
    registered name and options) trained on `fields`."""
    run = _finished_run(path)
    try:
        saved: dict[str, Any] = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
        state, model, theirs = saved["state_dict"], saved["config"]["model"], saved["fields"]
    except (OSError, KeyError, TypeError, RuntimeError, EOFError) as e:
        raise ConfigError(
            f"init_from: {run}/model.pt cannot be read ({type(e).__name__})"
        ) from None
    name = backbone.registered_name
    if model.get("name") != name:
        raise ConfigError(
            f"init_from: {run} trained model '{model.get('name')}', not the backbone '{name}'"
        )
    options = type(backbone.options).model_validate(model).model_dump()
    ours = backbone.options.model_dump()
    differ = [k for k in ours if ours[k] != options.get(k)]
    if differ:
        k = differ[0]
        raise ConfigError(
            f"init_from: {run} trained {name} with {k}={options.get(k)!r}, the backbone here has "
            f"{k}={ours[k]!r}"
        )
    ours_fields = [[f.name, str(f.role), f.cardinality] for f in fields]
    their_fields = [[f["name"], f["role"], f["cardinality"]] for f in theirs]
    if ours_fields != their_fields:
        raise ConfigError(
            f"init_from: {run} was trained on other fields or vocabularies than this data's"
        )
    return state
