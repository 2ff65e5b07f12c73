"""`gprec groups ACTION`: everything done with groups after (or instead of) `gprec train`.

Each action lives in its own module under `gprec.cli` with an `add_parser(sub)` that
registers it on the `groups` sub-parser; the tuple below is the one place that lists them,
so adding an action never touches another's module.
"""

from __future__ import annotations

from gprec.cli import groups_recommend, groups_report, groups_similarity, groups_train

ACTIONS = (groups_train, groups_recommend, groups_similarity, groups_report)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "groups",
        help="group recommendation and inspection of groups (learned or given)",
        description="Train and query group recommenders on real groups; inspect the groups "
        "a run has learned.",
    )
    gsub = p.add_subparsers(dest="groups_command", required=True, metavar="ACTION")
    for module in ACTIONS:
        module.add_parser(gsub)
