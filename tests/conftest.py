from pathlib import Path

import numpy as np
import pytest
import torch

from gprec.data.schema import EncodedField, Role

torch.set_num_threads(1)


def toy_fields(cards=(50, 6, 40, 5, 3), roles=None) -> list[EncodedField]:
    roles = roles or [Role.ITEM, Role.ITEM, Role.PERSONAL, Role.USER, Role.USER]
    return [EncodedField(f"f{i}", r, c) for i, (r, c) in enumerate(zip(roles, cards, strict=True))]


def toy_data(n: int, cards=(50, 6, 40, 5, 3), seed: int = 0):
    """Index matrix with a learnable rule: the label depends on item and user fields."""
    rng = np.random.default_rng(seed)
    X = np.stack([rng.integers(1, c, n) for c in cards], axis=1).astype(np.int64)
    logit = np.where(X[:, 1] % 2 == X[:, 3] % 2, 1.5, -1.5) + 0.5 * np.sin(X[:, 2])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return X, y


def toy_batch(n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`toy_data` as the (indices, labels) tensors a model takes."""
    X, y = toy_data(n, seed=seed)
    return torch.from_numpy(X), torch.from_numpy(y)


# MovieLens-100K's schema with small vocabularies, and a KMeans-style `group` user field last
# (DMTL reads it; drop it with `ML_FIELDS[:-1]`).
ML_FIELDS = [
    EncodedField("item_id", Role.ITEM, 30),
    EncodedField("genres", Role.ITEM, 8),
    EncodedField("user_id", Role.PERSONAL, 25),
    EncodedField("age", Role.USER, 7),
    EncodedField("gender", Role.USER, 3),
    EncodedField("occupation", Role.USER, 5),
    EncodedField("group", Role.USER, 4),
]


@pytest.fixture
def fields():
    return toy_fields()


GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western"]  # fmt: skip


def write_ml100k(directory, n_users=30, n_items=20, n_ratings=600, seed=0):
    """A small dataset in the official MovieLens-100K file formats."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    occupations = ["technician", "writer", "other", "executive"]
    (directory / "u.user").write_text(
        "".join(
            f"{u}|{rng.integers(18, 60)}|{'MF'[u % 2]}|{occupations[u % 4]}|{10000 + u * 7}\n"
            for u in range(1, n_users + 1)
        )
    )
    lines = []
    for i in range(1, n_items + 1):
        flags = ["0"] * 19
        flags[1 + i % 18] = "1"
        year = 1980 + i % 15
        lines.append(
            f"{i}|Movie {i} ({year})|01-Jan-{year}||http://us.imdb.com/M/x|{'|'.join(flags)}\n"
        )
    (directory / "u.item").write_bytes("".join(lines).encode("latin-1"))
    (directory / "u.genre").write_text("".join(f"{g}|{k}\n" for k, g in enumerate(GENRES)))
    users = rng.integers(1, n_users + 1, n_ratings)
    items = rng.integers(1, n_items + 1, n_ratings)
    ratings = np.clip(np.round(3 + (users % 3) - (items % 2) + rng.normal(0, 1, n_ratings)), 1, 5)
    (directory / "u.data").write_text(
        "".join(
            f"{u}\t{i}\t{int(r)}\t{880000000 + k}\n"
            for k, (u, i, r) in enumerate(zip(users, items, ratings, strict=True))
        )
    )
    return directory


# -- plain-torch references shared by the model tests -------------------------------------


def train_steps(model, x, y, steps: int = 30, lr: float = 0.01) -> list[float]:
    """Adam steps on one batch; the main BCE after each (what the loss-decrease tests read)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x, y).logit, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def index_batch(n: int = 32) -> torch.Tensor:
    """`toy_data`'s index matrix alone, as a tensor."""
    X, _ = toy_data(n)
    return torch.from_numpy(X)


def plain_mlp(x: torch.Tensor, net) -> torch.Tensor:
    """An `MLP` (ReLU, no BatchNorm, no dropout) written out in plain torch."""
    for i, lin in enumerate(net.linears):
        x = x @ lin.weight.t() + lin.bias
        if i < net.n_hidden:
            x = torch.relu(x)
    return x


def field_offsets(fields) -> torch.Tensor:
    """Each field's first row in the shared embedding table."""
    cards = torch.tensor([f.cardinality for f in fields])
    return torch.cat([torch.zeros(1, dtype=torch.long), cards.cumsum(0)[:-1]])


ML100K_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ml-100k"


def train_tiny_ml100k(root: Path, name: str, *sets: str, config: str = "mlp.yaml") -> Path:
    """`gprec train` of an ML-100K config on the copy `write_ml100k` wrote in `root/ml-100k`,
    2 epochs of batches of 256, into `root/name`; the run directory."""
    from gprec.cli.main import main

    out = root / name
    args = ["train", "-c", str(ML100K_CONFIGS / config), "--set", f"data.path={root / 'ml-100k'}",
            "--set", f"data.cache_dir={root / 'cache'}", "--set", "train.max_epochs=2",
            "--set", "train.progress=false", "--set", "train.batch_size=256",
            *[a for s in sets for a in ("--set", s)], "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    return out
