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


@pytest.fixture
def fields():
    return toy_fields()
