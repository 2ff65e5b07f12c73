"""`gprec recommend RUN_DIR --user ID` (or `--users FILE`): a user's top k items from a finished
run, the user's training items left out (`gprec.serving.recommend`)."""

from __future__ import annotations

from gprec.cli.common import add_overwrite, add_rebuild_catalogue


def add_parser(sub) -> None:
    p = sub.add_parser(
        "recommend",
        help="top-k items for a user (or a file of users) from a finished run",
        description="Score every item of the run's catalogue for the user in one pass, leave "
        "out the items the user interacted with in training, and print the k best with their "
        "scores (a table, or --json). With --users FILE (one id per line, or a CSV with a "
        "user_id column) it writes user, rank, item, score for every user: CSV on standard "
        "output, or --output FILE (.csv or .json).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", "-u", help="the user's id as in the data")
    who.add_argument(
        "--users", metavar="FILE", help="user ids, one per line or a CSV column user_id"
    )
    p.add_argument("--k", "-k", type=int, default=10, help="list length (default 10)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table (or CSV)")
    p.add_argument(
        "--output", "-o", help="write to FILE (.csv or .json, written whole) instead of printing"
    )
    add_overwrite(p)
    add_rebuild_catalogue(p)
    p.set_defaults(handler=handle)


def handle(args) -> int:
    import json
    from pathlib import Path

    from gprec.cli.common import at_least_one, echo, output_file
    from gprec.errors import ConfigError
    from gprec.io import write_text_atomic
    from gprec.serving.recommend import Recommender, read_user_ids

    at_least_one(args.k, "--k")
    out_format = None
    if args.output is not None:
        out_format = Path(args.output).suffix.lower().lstrip(".")
        if out_format not in ("csv", "json"):
            raise ConfigError(f"--output {args.output}: give a .csv or .json file")
        output_file(args.output, ".csv or .json", overwrite=args.overwrite)
    if args.user is not None and not args.user.strip():
        raise ConfigError("--user is empty: give a user id")
    rec = Recommender.open(args.run_dir, rebuild_catalogue=args.rebuild_catalogue)
    if args.users is not None:
        users = read_user_ids(args.users, columns=(rec.user_key, "user_id"))
        recs = rec.recommend(users, args.k, source=args.users)
    else:
        recs = rec.recommend([args.user.strip()], args.k)
        if not recs[0].items:
            raise ConfigError(
                f"user {args.user!r} interacted with every item of the catalogue in training: "
                "none to recommend"
            )
    empty = sum(1 for r in recs if not r.items)
    if empty:
        echo(f"gprec: warning: {empty:,d} users interacted with every item in training: no items")
    single = args.users is None
    if out_format == "json" or (out_format is None and args.json):
        text = json.dumps(recs[0].to_dict() if single else [r.to_dict() for r in recs], indent=2)
    elif out_format == "csv" or not single:
        text = records_csv(recs, rec.item_key)
    else:
        text = table(rec, recs[0])
    if args.output is None:
        print(text, end="" if text.endswith("\n") else "\n")
    else:
        write_text_atomic(Path(args.output), text if text.endswith("\n") else text + "\n")
        echo(f"wrote {sum(len(r.items) for r in recs):,d} recommendations to {args.output}")
    return 0


def records_csv(recs, item_key: str) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["user", "rank", "item", "score"])
    for r in recs:
        for row in r.records():
            w.writerow([row["user"], row["rank"], row["item"], repr(row["score"])])
    return buf.getvalue()


def table(rec, r) -> str:
    """One user's list with the items' other fields (e.g. genres, year) beside their ids."""
    features = rec.item_features(r.items)
    lines = [
        f"user {r.user}: top {len(r.items)} of {r.candidates:,d} items ({r.excluded:,d} "
        "training items left out)",
        "  ".join(["rank", f"{rec.item_key:<10}", f"{'score':>10}", *features]),
    ]
    for k, (item, score) in enumerate(zip(r.items, r.scores, strict=True)):
        extra = [values[k] for values in features.values()]
        lines.append("  ".join([f"{k + 1:>4}", f"{item:<10}", f"{score:>10.4f}", *extra]))
    return "\n".join(lines) + "\n"
