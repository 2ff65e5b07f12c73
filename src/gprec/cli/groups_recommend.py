"""`gprec groups recommend RUN_DIR --group ID`: a group's top-k from a `gprec groups train` run,
with how well the list serves each member."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "recommend",
        help="top-k items for a group from a group run, with per-member satisfaction",
        description="Score every item for the group (from its profile or by aggregating its "
        "members' scores), leave out the items the group chose in training, print the top k, "
        "and each member's satisfaction with the list (1: as good as the member's own top k).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished `gprec groups train` run")
    p.add_argument("--group", "-g", required=True, help="the group's id as in the data")
    p.add_argument("--k", type=int, default=10, help="list length (default 10)")
    p.add_argument(
        "--method",
        help="profile, average, least_misery, most_pleasure or borda (default: the run's "
        "train.score)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=handle)


def handle(args) -> int:
    import numpy as np

    from gprec.cli.common import at_least_one
    from gprec.errors import ConfigError
    from gprec.evaluation.aggregation import member_satisfaction, top_k
    from gprec.groups.load import load_group_run

    at_least_one(args.k, "--k")
    run = load_group_run(args.run_dir)
    g = run.group_code(args.group)
    scorer = run.scorer(args.method)
    exclude = run.seen[g]
    scores = scorer.group_matrix(np.array([g]), exclude=exclude[None])[0]
    k = min(args.k, int((~exclude).sum()))
    if k == 0:
        raise ConfigError(f"group {args.group} chose every item in training: none to recommend")
    items = top_k(scores, k, exclude=exclude)
    users, _ = run.tables.members(np.array([g]))
    member = run.scorer("average").user_matrix(users)
    sat = member_satisfaction(member, items, exclude=exclude)
    out = {
        "group": args.group,
        "method": scorer.method,
        "items": [
            {"rank": r + 1, "item": str(run.item_ids[i]), "score": float(scores[i])}
            for r, i in enumerate(items)
        ],
        "members": [
            {"user": str(run.user_ids[u]), "satisfaction": float(s)}
            for u, s in zip(users, sat.per_member, strict=True)
        ],
        "satisfaction": {"mean": float(sat.group_mean[0]), "min": float(sat.group_min[0])},
        "excluded_training_items": int(exclude.sum()),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"group {args.group}: top {k} by {scorer.method} ({out['excluded_training_items']} "
        "training items left out)"
    )
    for row in out["items"]:
        print(f"{row['rank']:>4}  {row['item']:<12} {row['score']:.4f}")
    print(
        f"member satisfaction: mean {sat.group_mean[0]:.3f}, min {sat.group_min[0]:.3f} "
        f"over {len(users)} members"
    )
    return 0
