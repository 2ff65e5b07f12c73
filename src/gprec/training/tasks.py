"""What training optimises and reports, per kind of target (`train.task`).

A task gives the trainer everything that depends on the target, so the trainer itself knows
none of it: the loss of the model's main output, the transform from that output to a
prediction, the metrics of predictions against targets, and the validation metric early
stopping watches with its direction.

- `binary` (CTR, the default): labels 0/1, BCE with logits, sigmoid, AUC and LogLoss; early
  stopping on AUC (higher is better).
- `regression` (ratings): the target itself (`data.target: value`), MSE, RMSE and MAE; early
  stopping on RMSE (lower is better). The model predicts the deviation from the training
  targets' mean (`offset`, set by `fit` from the training split and saved with the checkpoint):
  every model starts near 0, and a rating scale's mean (3.5) is far from it; without the
  offset the first epochs would only move output biases.

- `implicit` (implicit feedback): rows labelled 1 are observed interactions (positives); rows
  labelled 0 are not used. Training: each positive with `train.negatives` sampled items (the
  same user's row with another item's fields, uniform over the training catalogue; a sample
  may by chance be one of the user's positives, which at a few per thousand is left as noise),
  BCE. Evaluation, strict: each held-out positive ranked against `train.eval_negatives`
  distinct items the data never pairs with the user (in any split, with any label), sampled
  with a fixed seed so every epoch sees the same lists; scores are logits (a float32 sigmoid
  would round confident ones to 1.0) and a negative scoring equal to the positive counts
  against it. HR@5/10 and NDCG@5/10; early stopping on NDCG@10. Epochs iterate over the
  positives only. An interaction log without labels: `data.target: positive` (every row).

A model's main output (`ModelOutput.logit`) is the task's raw output: a logit for `binary` and
`implicit`, the predicted value for `regression`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from gprec.data.schema import Role
from gprec.errors import ConfigError
from gprec.evaluation.metrics import ctr_metrics, regression_metrics
from gprec.evaluation.ranking import rank_metrics, sampled_ranks


@dataclass(frozen=True)
class Task:
    name: ClassVar[str]
    loss_name: ClassVar[str]  # the main loss's name in logs and log.jsonl
    monitor: ClassVar[str]  # the validation metric early stopping watches
    higher_is_better: ClassVar[bool]
    target: ClassVar[str]  # what `data.target` must be: label (0/1) or value

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def transform(self, output: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def metrics(self, y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError

    def fit(self, X_train: torch.Tensor, y_train: torch.Tensor, fields, known=()) -> Task:
        """This task with what it learns from the training split (nothing, by default);
        `known` holds the other splits' rows (implicit: interactions never drawn as negatives)."""
        return self

    def training_rows(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows the epochs iterate over (by default all of them)."""
        return X, y

    def expand(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch the loss sees (by default the batch itself)."""
        return xb, yb

    def evaluate(self, score, X: torch.Tensor, y: torch.Tensor, negatives=None) -> dict[str, float]:
        """Metrics of a split; `score(X)` gives the transformed predictions as numpy.
        `negatives`: listed negatives of the rows (implicit only)."""
        return self.metrics(y.cpu().numpy(), score(X))

    def state(self) -> dict:
        """What a checkpoint keeps to make the same predictions again."""
        return {"name": self.name}

    def worst(self) -> float:
        """A monitor value every real one improves on."""
        return -math.inf if self.higher_is_better else math.inf

    def improves(self, value: float, best: float) -> bool:
        return value > best if self.higher_is_better else value < best


@dataclass(frozen=True, eq=False)
class BinaryTask(Task):
    name = "binary"
    loss_name = "bce"
    monitor = "auc"
    higher_is_better = True
    target = "label"

    def loss(self, output, y):
        return F.binary_cross_entropy_with_logits(output, y)

    def transform(self, output):
        return torch.sigmoid(output)

    def metrics(self, y_true, pred):
        return ctr_metrics(y_true, pred)


@dataclass(frozen=True)
class RegressionTask(Task):
    name = "regression"
    loss_name = "mse"
    monitor = "rmse"
    higher_is_better = False
    target = "value"
    offset: float = 0.0  # the training targets' mean, added to the model's output

    def fit(self, X_train, y_train, fields, known=()):
        return RegressionTask(offset=float(y_train.double().mean())) if len(y_train) else self

    def state(self):
        return {"name": self.name, "offset": self.offset}

    def loss(self, output, y):
        return F.mse_loss(output + self.offset, y)

    def transform(self, output):
        return output + self.offset

    def metrics(self, y_true, pred):
        return regression_metrics(y_true, pred)


KS = (5, 10)
EVAL_CHUNK = 8192  # positives scored at once in the implicit task's evaluation


MONITORED = ("ndcg@10", "hr@10", "ndcg@5", "hr@5")  # the implicit task's metrics, monitor first


def ranking_summary(ranks: np.ndarray) -> dict[str, float]:
    """Mean HR@k and NDCG@k of the held-out items' ranks (`evaluation.ranking`); NaN for none."""
    if len(ranks) == 0:
        return dict.fromkeys(MONITORED, float("nan"))
    per_case = rank_metrics(ranks, KS)
    return {m: float(per_case[m].mean()) for m in MONITORED}


def sampled_ranking_metrics(pos, neg) -> dict[str, float]:
    """Each positive's score `pos` (n,) against its negatives `neg` (n, N), ties counted
    against the positive."""
    return ranking_summary(sampled_ranks(pos, neg) if len(pos) else np.zeros(0, np.int64))


@dataclass(frozen=True, eq=False)
class ImplicitTask(BinaryTask):
    name = "implicit"
    loss_name = "bce"
    monitor = "ndcg@10"
    higher_is_better = True
    target = "label"
    negatives: int = 4
    eval_negatives: int = 100
    seed: int = 0
    # Set by `fit` from the training split:
    item_col: int = -1  # the item's ID field (the first item field)
    user_col: int = -1  # the user's ID field (the first personal field)
    item_cols: torch.Tensor | None = None  # every item field
    item_table: torch.Tensor | None = None  # item ID -> its item fields' values
    catalogue: torch.Tensor | None = None  # every item ID the vocabulary knows
    seen: torch.Tensor | None = None  # keys user * n_item_ids + item of every pair in the data
    n_item_ids: int = 0
    generator: torch.Generator | None = None

    def transform(self, output):
        # Rank on logits: a float32 sigmoid rounds confident scores to exactly 1.0, and ties
        # count against the positive.
        return output

    def training_rows(self, X, y):
        # Only positives: each batch's negatives are sampled (`expand`), never rows labelled 0.
        keep = y == 1
        return X[keep], y[keep]

    def fit(self, X_train, y_train, fields, known=()):
        items = [i for i, f in enumerate(fields) if f.role == Role.ITEM]
        users = [i for i, f in enumerate(fields) if f.role == Role.PERSONAL]
        if not items or not users:
            raise ConfigError(
                "train.task implicit needs an item field and a personal (user id) field: "
                "negatives are other items, excluded where the user interacted"
            )
        item_col, user_col = items[0], users[0]
        n_ids = fields[item_col].cardinality
        table = torch.zeros(n_ids, len(items), dtype=torch.long, device=X_train.device)
        cols = torch.tensor(items, device=X_train.device)
        table[X_train[:, item_col]] = X_train.index_select(1, cols)
        # An item known only from a listed negative still has its own ID (its other item fields
        # are unknown: index 0, as for any unseen value).
        table[:, items.index(item_col)] = torch.arange(n_ids, device=X_train.device)
        # Never a negative: any (user, item) the data holds, in any split, with any label (a
        # rated-but-disliked item, another held-out positive): the NCF convention.
        every = torch.cat([X_train, *[k.to(X_train.device) for k in known]])
        keys = torch.unique(every[:, user_col] * n_ids + every[:, item_col])
        return ImplicitTask(
            negatives=self.negatives,
            eval_negatives=self.eval_negatives,
            seed=self.seed,
            item_col=item_col,
            user_col=user_col,
            item_cols=cols,
            item_table=table,
            # Every item the vocabulary knows (not only the positives): negatives as NCF and
            # AGREE sample them, so an item met only in evaluation lists is trained as one.
            catalogue=torch.arange(1, n_ids, device=X_train.device),
            seen=keys,
            n_item_ids=n_ids,
            generator=torch.Generator(device=X_train.device).manual_seed(self.seed),
        )

    def _with_items(self, rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """`rows` with their item fields replaced by those of `items` (same length)."""
        out = rows.clone()
        out[:, self.item_cols] = self.item_table[items]
        return out

    def expand(self, xb, yb):
        pos = xb[yb == 1]
        k = self.negatives
        draw = torch.randint(
            len(self.catalogue), (len(pos) * k,), generator=self.generator, device=xb.device
        )
        neg = self._with_items(pos.repeat_interleave(k, 0), self.catalogue[draw])
        y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).to(yb)
        return torch.cat([pos, neg]), y

    def eval_negatives_for(
        self, pos: torch.Tensor, g: torch.Generator | None = None
    ) -> torch.Tensor:
        """`eval_negatives` distinct items per positive row, none seen by its user in training
        and none its own item: (n, N). Seeded (or from `g`), so the same rows get the same
        lists."""
        if g is None:
            g = torch.Generator(device=pos.device).manual_seed(self.seed + 1)
        n, N, C = len(pos), self.eval_negatives, len(self.catalogue)
        if N > C - 1:
            raise ConfigError(
                f"train.eval_negatives {N} exceeds the training catalogue ({C} items)"
            )
        out = torch.zeros(n, N, dtype=torch.long, device=pos.device)
        todo = torch.arange(n, device=pos.device)
        filled = torch.zeros(n, dtype=torch.long, device=pos.device)
        for _ in range(50):  # rounds of oversampling; a handful suffice unless users saw most items
            if len(todo) == 0:
                break
            cand = self.catalogue[
                torch.randint(C, (len(todo), 2 * N), generator=g, device=pos.device)
            ]
            user = pos[todo, self.user_col].unsqueeze(1)
            ok = ~torch.isin(user * self.n_item_ids + cand, self.seen)
            ok &= cand != pos[todo, self.item_col].unsqueeze(1)
            # drop repeats within a row, and items already taken in earlier rounds
            taken = torch.cat([out[todo], cand], 1)
            sorted_, order = taken.sort(dim=1, stable=True)
            dup = torch.zeros_like(taken, dtype=torch.bool)
            dup.scatter_(1, order[:, 1:], sorted_[:, 1:] == sorted_[:, :-1])
            ok &= ~dup[:, N:]
            for_row = filled[todo]
            rank = ok.cumsum(1) - 1 + for_row.unsqueeze(1)
            put = ok & (rank < N)
            r, c = put.nonzero(as_tuple=True)
            out[todo[r], rank[r, c]] = cand[r, c]
            filled[todo] = torch.clamp(for_row + ok.sum(1), max=N)
            todo = todo[filled[todo] < N]
        if len(todo):
            raise ConfigError(
                f"train.eval_negatives {N}: {len(todo)} users interacted with too much of the "
                "catalogue to draw that many unseen items; lower it"
            )
        return out

    def evaluate(self, score, X, y, negatives=None):
        """Strict ranking of each positive row against `eval_negatives` sampled items or, given
        `negatives` (n_rows, L) item indices, -1 padded, aligned with X's rows (a source's
        published lists), against those."""
        return ranking_summary(self.ranks(score, X, y, negatives))

    def ranks(self, score, X, y, negatives=None) -> np.ndarray:
        """The rank of each positive row of X (`y == 1`, in row order) among its negatives, as
        `evaluate` ranks it: what its metrics average (sliced evaluation averages subsets)."""
        keep = y == 1
        pos = X[keep]
        # In chunks of positives: ML-1M's 57k validation positives x 100 negatives would be
        # 5.7M candidate rows at once. One generator across chunks keeps sampled lists fixed.
        if negatives is not None:
            lists = torch.as_tensor(negatives).to(X.device)[keep]
            chunks = zip(pos.split(EVAL_CHUNK), lists.split(EVAL_CHUNK), strict=True)
        else:
            g = torch.Generator(device=pos.device).manual_seed(self.seed + 1)
            chunks = ((c, self.eval_negatives_for(c, g)) for c in pos.split(EVAL_CHUNK))
        ranks = []
        for chunk, items in chunks:
            L = items.shape[1]
            rows = self._with_items(chunk.repeat_interleave(L, 0), items.clamp(min=0).flatten())
            neg_scores = np.asarray(score(rows)).reshape(len(chunk), L)
            mask = (items >= 0).cpu().numpy()
            ranks.append(sampled_ranks(np.asarray(score(chunk)), neg_scores, mask))
        return np.concatenate(ranks) if ranks else np.zeros(0, np.int64)


TASK_CLASSES: dict[str, type[Task]] = {
    t.name: t for t in (BinaryTask, RegressionTask, ImplicitTask)
}
TASKS: dict[str, Task] = {name: cls() for name, cls in TASK_CLASSES.items()}


def make_task(cfg) -> Task:
    """The task `train` asks for, with its settings (`train.negatives` ...)."""
    if cfg.task == "implicit":
        return ImplicitTask(
            negatives=cfg.negatives, eval_negatives=cfg.eval_negatives, seed=cfg.seed
        )
    return TASKS[cfg.task]
