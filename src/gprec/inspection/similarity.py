"""Cosine similarities among GPRec's group embeddings (the paper's Figure 4).

For chosen groups `i_1..i_K` the matrix is over `[p_i1..p_iK, n_i1..n_iK]` (2K x 2K; K x K over
`p` alone with single group embeddings, GPRec-1, which has no `n_i`). The summary numbers are
computed over all G groups and over the chosen ones:

- `mean_cos_p_n`: the mean of cos(p_i, n_i) (the paper: near 0, 0.03);
- `p` / `n`: the mean and the max of cos(p_i, p_j) (resp. n) over pairs i != j (the paper:
  mostly low, at most 0.6; DGPM's group embeddings average 0.9).

Group ids are 0-based rows of `P` and `N`, as `gprec groups report` numbers them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from gprec.errors import ConfigError


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarities of the rows of `vectors` `(n, d)`; a zero row has cosine 0
    with everything (itself included)."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1)
    unit = np.divide(v, norms[:, None], out=np.zeros_like(v), where=norms[:, None] > 0)
    return np.clip(unit @ unit.T, -1.0, 1.0)


def off_diagonal(matrix: np.ndarray) -> dict[str, float | None]:
    """Mean and max of a square matrix's entries off its diagonal (None for a 1 x 1 one)."""
    n = len(matrix)
    if n < 2:
        return {"mean_off_diagonal": None, "max_off_diagonal": None}
    values = matrix[~np.eye(n, dtype=bool)]
    return {"mean_off_diagonal": float(values.mean()), "max_off_diagonal": float(values.max())}


def summary(P: np.ndarray, N: np.ndarray | None) -> dict[str, Any]:
    """The summary numbers of group embeddings `P` (and `N`), `(G, d)` each."""
    out: dict[str, Any] = {"groups": len(P), "p": off_diagonal(cosine_matrix(P))}
    if N is None:
        out |= {"mean_cos_p_n": None, "n": None}
        return out
    both = cosine_matrix(np.concatenate([P, N]))
    g = len(P)
    out["mean_cos_p_n"] = float(np.diagonal(both[:g, g:]).mean())
    out["n"] = off_diagonal(both[g:, g:])
    return out


def choose_groups(
    n_groups: int, k: int | None = None, ids: list[int] | None = None, seed: int = 0
) -> list[int]:
    """The given `ids` (checked), or `k` groups drawn at random (seeded), sorted."""
    if ids is not None:
        if not ids:
            raise ConfigError("--ids: give at least one group number")
        bad = [i for i in ids if not 0 <= i < n_groups]
        if bad:
            raise ConfigError(
                f"--ids: no group {bad[0]} in this run (its groups are 0..{n_groups - 1})"
            )
        if len(set(ids)) != len(ids):
            raise ConfigError("--ids: a group is named twice")
        return sorted(ids)
    if k is None:
        k = min(n_groups, 8)
    if not 1 <= k <= n_groups:
        raise ConfigError(f"--groups {k}: must be between 1 and the run's {n_groups} groups")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_groups, size=k, replace=False))


def similarity_study(P: np.ndarray, N: np.ndarray | None, chosen: list[int]) -> dict[str, Any]:
    """The heatmap's matrix and labels for the `chosen` groups, with the summary numbers over
    all groups and over the chosen ones."""
    P = np.asarray(P, dtype=np.float64)
    N = None if N is None else np.asarray(N, dtype=np.float64)
    labels = [f"p{i}" for i in chosen]
    vectors = P[chosen]
    if N is not None:
        labels += [f"n{i}" for i in chosen]
        vectors = np.concatenate([vectors, N[chosen]])
    return {
        "dual": N is not None,
        "chosen": list(chosen),
        "labels": labels,
        "matrix": cosine_matrix(vectors).tolist(),
        "all_groups": summary(P, N),
        "chosen_groups": summary(P[chosen], None if N is None else N[chosen]),
    }


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The summary numbers as a Markdown table (all groups, the chosen ones)."""
    rows = [
        "| groups | mean cos(p_i, n_i) | p: mean off-diag | p: max off-diag "
        "| n: mean off-diag | n: max off-diag |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, name in (("all_groups", "all"), ("chosen_groups", "chosen")):
        s = result[key]
        n = s["n"] or {"mean_off_diagonal": None, "max_off_diagonal": None}
        rows.append(
            f"| {name} ({s['groups']}) | {_num(s['mean_cos_p_n'])} "
            f"| {_num(s['p']['mean_off_diagonal'])} | {_num(s['p']['max_off_diagonal'])} "
            f"| {_num(n['mean_off_diagonal'])} | {_num(n['max_off_diagonal'])} |"
        )
    return rows


def markdown(result: dict[str, Any], run: str, png: str) -> str:
    lines = [
        f"# Group embedding similarity: {run}",
        "",
        f"Cosine similarities among the group embeddings of groups {result['chosen']} "
        f"(0-based) out of {result['all_groups']['groups']}.",
    ]
    if not result["dual"]:
        lines.append(
            "This run has single group embeddings (`group_embedding: single`, GPRec-1): "
            "there are no n_i, so only the p_i are shown."
        )
    lines += ["", *summary_lines(result), "", f"![heatmap]({png})", ""]
    labels = result["labels"]
    lines += ["| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for label, row in zip(labels, result["matrix"], strict=True):
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    return "\n".join(lines) + "\n"


def plot_heatmap(result: dict[str, Any], path: Path | BinaryIO, title: str) -> None:
    """The matrix as a heatmap PNG into `path` (a file or a binary stream; matplotlib,
    headless), values written in the cells when they fit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix, labels = np.asarray(result["matrix"]), result["labels"]
    n = len(labels)
    size = min(4 + 0.45 * n, 14)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    if result["dual"]:  # separate the p block from the n block
        k = n // 2
        ax.axhline(k - 0.5, color="black", lw=0.8)
        ax.axvline(k - 0.5, color="black", lw=0.8)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                v = matrix[i, j]
                color = "white" if abs(v) > 0.6 else "black"
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color=color)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
