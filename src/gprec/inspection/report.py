"""`gprec groups report`: what each learned group of a GPRec run holds.

Users are the distinct users of the run's training rows (`runs.training_users`); each gets its
noiseless membership probabilities from its user fields alone (`GPRec.user_group_masks`).

Membership (`membership`):

- `threshold` (the default for dual group embeddings): user u is in group i when its mask
  m1_i > `threshold` (0.5). GPRec's dual masks are independent per group, a user may be in many
  groups or in none, and m1_i > 0.5 is where the noiseless mask weighs `p_i` above `n_i`: the
  model's own reading of "in group i".
- `argmax`: each user is in exactly its strongest group. The default for single group
  embeddings (GPRec-1), whose weights are a softmax over groups and sum to 1, so a threshold
  of 0.5 would leave most users in no group.

Lift of a value v (a user attribute, or an item field's value among liked items) in group g:
P(v | g) / P(v) over all users (for items: over all training positives, a positive of a member
counting for its group). Only values seen at least `min_count` times in the group are reported,
so a tiny group's one-off values are not read as a profile; counts are given beside every lift.

On the built-in synthetic data (planted groups) the report adds how well the learned groups
recover the planted ones (`recovery`), for the trained model, for the same model untrained
(same config and `train.seed`, before any step) and for the trained memberships dealt to users
at random (chance level).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from gprec.data.schema import Role
from gprec.errors import ConfigError
from gprec.inspection import recovery as rec
from gprec.inspection.runs import (
    TrainingUsers,
    run_data,
    training_users,
    untrained_model,
    user_masks,
)
from gprec.training.load import LoadedRun

MEMBERSHIP_RULES = ("threshold", "argmax")


def default_membership(dual: bool) -> str:
    return "threshold" if dual else "argmax"


def memberships(masks: np.ndarray, rule: str, threshold: float = 0.5) -> np.ndarray:
    """Boolean membership `(n_users, G)` from masks `(n_users, G)` by `rule`."""
    masks = np.asarray(masks)
    if rule == "threshold":
        return masks > threshold
    if rule == "argmax":
        out = np.zeros(masks.shape, dtype=bool)
        if masks.size:
            out[np.arange(len(masks)), masks.argmax(1)] = True
        return out
    raise ConfigError(f"membership: {rule!r} is not one of {', '.join(MEMBERSHIP_RULES)}")


def one_hot(values: np.ndarray, n_values: int, rows: np.ndarray | None = None, n_rows=None):
    """Sparse `(n_rows, n_values)` counts: row `rows[k]` (k itself by default) gets one count of
    `values[k]`; repeated (row, value) pairs add up."""
    values = np.asarray(values, dtype=np.int64)
    rows = np.arange(len(values)) if rows is None else np.asarray(rows, dtype=np.int64)
    n_rows = len(values) if n_rows is None else n_rows
    data = np.ones(len(values), dtype=np.float64)
    return sparse.csr_matrix((data, (rows, values)), shape=(n_rows, n_values))


def lift(member: np.ndarray, unit_counts) -> dict[str, np.ndarray]:
    """Per group and value: `count[g, v]` (value v's count among group g's units), the group's
    total `in_group[g]`, the overall `overall[v]` and `total`, and
    `lift[g, v] = (count / in_group) / (overall / total)` (NaN where undefined).

    `member` is `(n_units, G)` bools; `unit_counts` `(n_units, V)` (dense or sparse) holds how
    often each unit has each value: one-hot for a user's attribute, for items the number of a
    user's positives with that value."""
    m = np.asarray(member, dtype=np.float64)
    counts = sparse.csr_matrix(unit_counts, dtype=np.float64)
    count = np.asarray((counts.T @ m).T)  # (G, V)
    per_unit = np.asarray(counts.sum(1)).reshape(-1)
    in_group = m.T @ per_unit  # (G,)
    overall = np.asarray(counts.sum(0)).reshape(-1)
    total = float(per_unit.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (count / in_group[:, None]) / (overall / total)[None, :]
    ratio[~np.isfinite(ratio)] = np.nan
    return {"count": count, "in_group": in_group, "overall": overall, "total": total, "lift": ratio}


def top_values(
    table: dict[str, np.ndarray], names: list[str], top: int, min_count: int
) -> list[list[dict[str, Any]]]:
    """Per group, the `top` over-represented values (lift > 1, count >= `min_count`), highest
    lift first (then larger count, then value order)."""
    out = []
    count, ratio = table["count"], table["lift"]
    for g in range(len(count)):
        ok = np.flatnonzero((count[g] >= min_count) & (np.nan_to_num(ratio[g]) > 1.0))
        order = sorted(ok, key=lambda v: (-ratio[g, v], -count[g, v], v))[:top]
        out.append(
            [
                {
                    "value": names[v],
                    "count": int(count[g, v]),
                    "share_in_group": float(count[g, v] / table["in_group"][g]),
                    "share_overall": float(table["overall"][v] / table["total"]),
                    "lift": float(ratio[g, v]),
                }
                for v in order
            ]
        )
    return out


def value_names(run: LoadedRun, field: int) -> list[str]:
    """Display names of a field's indices (0 is the unseen value; a field outside the
    vocabularies, the KMeans `group`, shows its indices)."""
    f = run.fields[field]
    vocab = run.vocab.values.get(f.name)
    if vocab is None:
        return [str(v) for v in range(f.cardinality)]
    return ["(unseen)", *(str(v) for v in vocab)]


def membership_summary(member: np.ndarray, near_all: float) -> dict[str, Any]:
    n, g = member.shape
    per_user = member.sum(1)
    sizes = member.sum(0)
    share = sizes / n if n else np.zeros(g)
    histogram = np.bincount(per_user, minlength=1) if n else np.zeros(1, dtype=int)
    return {
        "users": int(n),
        "groups": int(g),
        "mean_groups_per_user": float(per_user.mean()) if n else 0.0,
        "groups_per_user": {str(k): int(c) for k, c in enumerate(histogram) if c},
        "share_in_no_group": float((per_user == 0).mean()) if n else 0.0,
        "share_in_several_groups": float((per_user > 1).mean()) if n else 0.0,
        "empty_groups": [int(i) for i in np.flatnonzero(sizes == 0)],
        "near_all_groups": [int(i) for i in np.flatnonzero(share >= near_all)],
        "near_all": near_all,
    }


def _recovery(
    run: LoadedRun, users: TrainingUsers, member: np.ndarray, rule: str, threshold: float,
    seed: int,
) -> dict[str, Any] | None:  # fmt: skip
    personal = [j for j, c in enumerate(users.columns) if run.fields[c].role == Role.PERSONAL]
    if run.config.data.source != "synthetic" or not personal:
        return None
    names = value_names(run, users.columns[personal[0]])
    planted = rec.planted_membership(run.config, [names[v] for v in users.values[:, personal[0]]])
    untrained = memberships(user_masks(untrained_model(run), users.values), rule, threshold)
    return {
        "planted_groups": int(planted.shape[1]),
        "trained": rec.recovery(planted, member),
        "untrained": rec.recovery(planted, untrained),
        "shuffled": rec.recovery(planted, rec.shuffled(member, seed)),
        "shuffle_seed": seed,
    }


def group_report(
    run: LoadedRun,
    membership: str | None = None,
    threshold: float = 0.5,
    top: int = 5,
    min_count: int = 5,
    near_all: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """The report of a loaded GPRec run as a JSON-ready mapping (`markdown` renders it)."""
    if top < 1:
        raise ConfigError(f"--top {top}: must be at least 1")
    if min_count < 1:
        raise ConfigError(f"--min-count {min_count}: must be at least 1")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"--threshold {threshold}: must be strictly between 0 and 1")
    if not 0.0 < near_all <= 1.0:
        raise ConfigError(f"--near-all {near_all}: must be in (0, 1]")
    model = run.model
    rule = membership or default_membership(model.dual)
    data = run_data(run)
    users = training_users(run, data)
    masks = user_masks(model, users.values)
    member = memberships(masks, rule, threshold)
    summary = membership_summary(member, near_all)

    attributes: dict[str, list] = {}
    for c in users.columns:
        f = run.fields[c]
        if f.role != Role.USER:  # a user id's lift says nothing about a group
            continue
        j = users.columns.index(c)
        table = lift(member, one_hot(users.values[:, j], f.cardinality))
        attributes[f.name] = top_values(table, value_names(run, c), top, min_count)

    positive = users.y > 0.5
    liked: dict[str, list] = {}
    for c, f in enumerate(run.fields):
        if f.role != Role.ITEM:
            continue
        counts = one_hot(users.X[positive, c], f.cardinality, users.row_user[positive], len(users))
        liked[f.name] = top_values(lift(member, counts), value_names(run, c), top, min_count)

    sizes = member.sum(0)
    groups = []
    for g in range(member.shape[1]):
        share = float(sizes[g] / len(users)) if len(users) else 0.0
        flag = None
        if sizes[g] == 0:
            flag = "empty"
        elif share >= near_all:
            flag = "near-all"
        elif sizes[g] < min_count:
            flag = "small"
        groups.append(
            {
                "group": g,
                "users": int(sizes[g]),
                "share": share,
                "flag": flag,
                "mean_mask": float(masks[:, g].mean()) if len(users) else 0.0,
                "user_attributes": {k: v[g] for k, v in attributes.items()},
                "liked": {k: v[g] for k, v in liked.items()},
            }
        )
    return {
        "run": str(run.path),
        "model": {
            "backbone": run.config.model.get("backbone", {}).get("name"),
            "strategy": run.config.model.get("strategy"),
            "group_embedding": "dual" if model.dual else "single",
            "n_groups": model.n_groups,
        },
        "data": run.config.data.source,
        "membership": {
            "rule": rule,
            "threshold": threshold if rule == "threshold" else None,
            "default": membership is None,
        },
        "top": top,
        "min_count": min_count,
        "positives": int(positive.sum()),
        "masks": {
            "mean": float(masks.mean()) if masks.size else 0.0,
            "share_decided": float(((masks < 0.1) | (masks > 0.9)).mean()) if masks.size else 0.0,
        },
        "summary": summary,
        "recovery": _recovery(run, users, member, rule, threshold, seed),
        "groups": groups,
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _values(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "-"
    return ", ".join(f"{e['value']} ×{e['lift']:.2f} ({e['count']})" for e in entries)


def markdown(report: dict[str, Any]) -> str:
    s, m = report["summary"], report["membership"]
    rule = (
        f"m1 > {m['threshold']} (threshold)"
        if m["rule"] == "threshold"
        else "strongest group (argmax)"
    )
    lines = [
        f"# Groups report: {report['run']}",
        "",
        f"GPRec ({report['model']['group_embedding']} group embeddings, "
        f"{report['model']['n_groups']} groups, backbone {report['model']['backbone']}, "
        f"strategy {report['model']['strategy']}) on {report['data']}: "
        f"{s['users']:,d} distinct training users, {report['positives']:,d} training positives.",
        f"A user is in a group when {rule}, on the noiseless masks from the user fields alone.",
        "",
        f"- groups per user: mean {s['mean_groups_per_user']:.2f}; in no group "
        f"{_pct(s['share_in_no_group'])}, in several {_pct(s['share_in_several_groups'])} "
        f"(users by count of groups: "
        + ", ".join(f"{k}: {v}" for k, v in s["groups_per_user"].items())
        + ")",
        f"- masks: mean {report['masks']['mean']:.3f}, decided (< 0.1 or > 0.9) "
        f"{_pct(report['masks']['share_decided'])}",
        f"- empty groups: {', '.join(map(str, s['empty_groups'])) or 'none'}",
        f"- groups holding >= {_pct(s['near_all'])} of users: "
        f"{', '.join(map(str, s['near_all_groups'])) or 'none'}",
    ]
    r = report.get("recovery")
    if r is not None:
        lines += [
            "",
            f"## Recovery of the {r['planted_groups']} planted groups",
            "",
            "| model | AMI | best-match Jaccard | distinct group sets |",
            "|---|---:|---:|---:|",
        ]
        for key, name in (
            ("trained", "trained"),
            ("untrained", "untrained (same config and seed, before training)"),
            ("shuffled", "trained memberships shuffled across users (chance)"),
        ):
            lines.append(
                f"| {name} | {r[key]['ami']:.3f} | {r[key]['best_match_jaccard']:.3f} "
                f"| {r[key]['distinct_sets']:,d} |"
            )
        lines += [
            "",
            "Distinct group sets: how many different sets of groups the users are in (1: all "
            "users in the same groups, and AMI 0 by construction; an untrained GPRec is close "
            "to that, its embeddings starting near 0).",
            "",
            "Best match of each planted group (trained): "
            + ", ".join(
                f"{p['planted']} -> {p['learned']} ({p['jaccard']:.2f})"
                for p in r["trained"]["per_planted"]
            ),
        ]
    lines += [
        "",
        "## Groups",
        "",
        f"Over-represented values: value ×lift (count), lift = P(value | group) / P(value), "
        f"only values with count >= {report['min_count']} in the group, top {report['top']}. "
        "User attributes are over the group's users; liked items over its members' training "
        "positives.",
        "",
        "| group | users | share | mean mask | flag | user attributes | liked |",
        "|---:|---:|---:|---:|---|---|---|",
    ]
    for g in report["groups"]:
        attrs = "; ".join(f"{k}: {_values(v)}" for k, v in g["user_attributes"].items() if v) or "-"
        liked = "; ".join(f"{k}: {_values(v)}" for k, v in g["liked"].items() if v) or "-"
        lines.append(
            f"| {g['group']} | {g['users']:,d} | {_pct(g['share'])} | {g['mean_mask']:.3f} "
            f"| {g['flag'] or ''} | {attrs} | {liked} |"
        )
    return "\n".join(lines) + "\n"
