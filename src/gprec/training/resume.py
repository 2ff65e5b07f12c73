"""The resumable checkpoint `resume.pt`: everything an epoch boundary of training depends on.

`Trainer.fit` writes it at the end of every epoch, atomically (a temp file beside it, then a
rename: `gprec.io.save_atomic`), so a run killed at any moment, even inside the write, leaves
the previous epoch's checkpoint intact. It holds the model, the optimizer, the LR scheduler,
every random state training draws from (torch's global generator: initialisation, dropout,
GPRec's Gumbel noise; the batch-order generator; the task's generator: the implicit task's
negatives; numpy's and Python's global state; CUDA's on a GPU), the epoch, early stopping's
state (best value, best epoch, epochs without improvement, the best model's weights) and
the log so far (what `log.jsonl` is rewritten to on resume). Training resumed from it goes on
exactly as the uninterrupted run would have: on CPU the same bits.

`run_training` resumes an interrupted or failed run of the same config from it
(`read_checkpoint` refuses one written for another config or other data, and one that cannot
be read, saying why); a finished run deletes it, since nothing resumes a finished run.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

RESUME = "resume.pt"
FORMAT = 1


def capture_rng(generators: dict[str, torch.Generator | None]) -> dict[str, Any]:
    """Every random state training draws from, in types `torch.load(weights_only=True)` reads.
    `generators`: the trainer's and the task's own generators by name (None: not used)."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
        "generators": {k: g.get_state() for k, g in generators.items() if g is not None},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator | None]) -> None:
    """Set every random state `capture_rng` saved; the generators must be the same ones."""
    torch.set_rng_state(state["torch"])
    kind, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    saved = state["generators"]
    live = {k for k, g in generators.items() if g is not None}
    if set(saved) != live:
        raise ValueError(f"random generators {sorted(saved)} saved, {sorted(live)} in use")
    for name in live:
        generators[name].set_state(saved[name])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_checkpoint(
    run_dir: Path, config_text: str, data_meta: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """`resume.pt` of `run_dir` if training of the config `config_text` on data described by
    `data_meta` may go on from it; else None and why not, as a phrase for a message."""
    from gprec.training.run_dir import config_differences

    path = run_dir / RESUME
    if not path.is_file():
        return None, f"{run_dir} holds no {RESUME} (killed before its first epoch ended)"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or damaged file: torch raises several kinds
        first = (str(e).splitlines() or [type(e).__name__])[0][:120]
        return None, f"{path} cannot be read ({first})"
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        return None, f"{path} is not a resume checkpoint of this gprec"
    meta = ckpt.get("meta") or {}
    try:
        differences = config_differences(
            yaml.safe_load(meta.get("config", "")) or {}, yaml.safe_load(config_text)
        )
    except yaml.YAMLError:
        differences = ["config: unreadable"]
    if differences:
        return None, f"{path} was written for another config ({'; '.join(differences[:3])})"
    if meta.get("data") != data_meta:
        return None, f"{path} was written for other data (rows or vocabulary sizes differ)"
    return ckpt, ""
