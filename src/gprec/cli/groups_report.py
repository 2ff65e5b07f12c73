"""`gprec groups report RUN_DIR`: what each learned group of a GPRec run holds, as Markdown and
JSON (`gprec.inspection.report`); on the built-in synthetic data also how well the learned groups
recover the planted ones, against the same model untrained."""

from __future__ import annotations

FILES = ("report.md", "report.json")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="per learned group of a GPRec run: its users, over-represented attributes and liked items",
        description="Per learned group of a GPRec run: its share of the training users, the "
        "user attributes over-represented in it and the items and item attributes its members "
        "like most (lift over all users, with counts), how many groups a user is in, and the "
        "groups that are empty or hold (nearly) everyone. The run's training data is re-read "
        "through its own config (the cache when it is there). On the built-in synthetic data "
        "(planted groups) it adds how well the learned groups recover the planted ones: AMI and "
        "best-match Jaccard, for the trained model and the same model untrained. Writes "
        "report.md and report.json. Group ids are 0-based.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished GPRec run directory")
    p.add_argument("--out", "-o", help="output directory (default: RUN_DIR-groups beside the run)")
    p.add_argument(
        "--top", type=int, default=5, metavar="N",
        help="over-represented values listed per group and field (default: 5)",
    )  # fmt: skip
    p.add_argument(
        "--membership", choices=("threshold", "argmax"),
        help="threshold: a user is in every group whose noiseless mask m1 exceeds --threshold "
        "(the default for dual group embeddings, whose masks are independent per group); "
        "argmax: in its strongest group only (the default for single group embeddings, whose "
        "weights sum to 1)",
    )  # fmt: skip
    p.add_argument(
        "--threshold", type=float, default=0.5,
        help="mask above which a user is in a group, with --membership threshold (default: 0.5)",
    )  # fmt: skip
    p.add_argument(
        "--min-count", type=int, default=5, metavar="C",
        help="report a value's lift only when the group holds it at least C times (default: 5)",
    )  # fmt: skip
    p.add_argument(
        "--near-all", type=float, default=0.95, metavar="SHARE",
        help="flag groups holding at least this share of the users (default: 0.95)",
    )  # fmt: skip
    p.add_argument(
        "--seed", type=int, default=0,
        help="seed of the chance-level recovery reference (shuffled memberships; default: 0)",
    )  # fmt: skip
    p.set_defaults(handler=handle)


def handle(args) -> int:
    import json

    from gprec.cli.common import output_dir
    from gprec.inspection.report import group_report, markdown
    from gprec.inspection.runs import check_out, default_out, load_gprec_run
    from gprec.io import write_text_atomic

    run = load_gprec_run(args.run_dir, "groups report")
    out = output_dir(args.out if args.out is not None else default_out(run.path))
    check_out(out, run.path)
    report = group_report(
        run,
        membership=args.membership,
        threshold=args.threshold,
        top=args.top,
        min_count=args.min_count,
        near_all=args.near_all,
        seed=args.seed,
    )
    out.mkdir(parents=True, exist_ok=True)
    md, js = (out / f for f in FILES)
    write_text_atomic(js, json.dumps(report, indent=2) + "\n")
    write_text_atomic(md, markdown(report))
    s = report["summary"]
    print(
        f"{s['groups']} groups, {s['users']:,d} users: {s['mean_groups_per_user']:.2f} groups "
        f"per user ({report['membership']['rule']}), {len(s['empty_groups'])} empty, "
        f"{len(s['near_all_groups'])} holding nearly everyone"
    )
    r = report["recovery"]
    if r is not None:
        for key in ("trained", "untrained", "shuffled"):
            print(
                f"recovery of {r['planted_groups']} planted groups, {key}: AMI {r[key]['ami']:.3f}, "
                f"best-match Jaccard {r[key]['best_match_jaccard']:.3f}"
            )
    for f in (md, js):
        print(f"wrote {f}")
    return 0
