"""The t-SNE picture of DMTL's group profile `z_g` (issue 19, acceptance 2), coloured by the
KMeans group each sample's user is in, with the profiling head's precision / recall / F1 on the
same rows beside it (is `z_g` a group profile at all?).

Reads a finished run of `benchmarks/dmtl_ml100k.py` (default: seed 2024), embeds `z_g` of up to
`--rows` test rows (seeded sample) with scikit-learn's t-SNE, and writes
`benchmarks/results/dmtl-ml100k/tsne_zg.png` and `profiling.json`.

    pip install -e ".[plots]"   # matplotlib
    python benchmarks/dmtl_tsne.py [--run runs/dmtl-ml100k/seed-2024/dmtl]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default=str(ROOT / "runs" / "dmtl-ml100k" / "seed-2024" / "dmtl"))
    p.add_argument("--rows", type=int, default=3000)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dmtl-ml100k"))
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from sklearn.manifold import TSNE

    from gprec.config import load_config
    from gprec.data.dataset import load_dataset
    from gprec.evaluation.ranking import profiling_report
    from gprec.models.registry import build_model

    run = Path(args.run)
    cfg = load_config(run / "config.yaml")
    data = load_dataset(cfg.data, cfg.split_seed())
    model = build_model(cfg.model, data.fields)
    model.load_state_dict(torch.load(run / "model.pt", map_location="cpu")["state_dict"])
    model.eval()
    group_col = [f.name for f in data.fields].index(model.options.group_field)
    X = data.X["test"]
    rows = np.random.default_rng(0).choice(len(X), min(args.rows, len(X)), replace=False)
    x = torch.from_numpy(np.ascontiguousarray(X[rows]))
    with torch.no_grad():
        z = model.profile(x).numpy()
        predicted = model.group_logits(x)[:, 1:].argmax(1).numpy() + 1  # class 0: "unseen"
    group = X[rows, group_col]
    report = profiling_report(group, predicted).to_dict()
    xy = TSNE(n_components=2, random_state=0, init="pca", perplexity=30).fit_transform(z)

    fig, ax = plt.subplots(figsize=(7, 6))
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=group, cmap="tab20", s=6, alpha=0.8)
    ax.set_title(
        f"DMTL z_g, t-SNE of {len(rows)} ML-100K test rows (seed {cfg.train.seed}), "
        f"colour = KMeans group\nprofiling macro F1 {report.get('f1_macro', float('nan')):.3f}",
        fontsize=9,
    )
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(sc, ax=ax, label="group")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "tsne_zg.png", dpi=110, bbox_inches="tight")
    (out / "profiling.json").write_text(
        json.dumps(
            {
                "run": str(run.relative_to(ROOT)) if run.is_relative_to(ROOT) else str(run),
                "rows": len(rows),
                "profiling": report,
            },
            indent=2,
        )  # fmt: skip
    )
    print(json.dumps(report, indent=2)[:800])
    return 0


if __name__ == "__main__":
    sys.exit(main())
