"""`gprec groups similarity RUN_DIR`: cosine similarities among a GPRec run's group embeddings
(the paper's Figure 4) as a heatmap PNG, with the summary numbers as JSON and Markdown
(`gprec.inspection.similarity`)."""

from __future__ import annotations

from gprec.errors import ConfigError

FILES = ("similarity.png", "similarity.json", "similarity.md")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "similarity",
        help="heatmap of cosine similarities among a GPRec run's group embeddings p_i, n_i",
        description="Cosine similarities among the group embeddings p_i and n_i of K random "
        "groups (seeded) or of the groups given by --ids, as a 2K x 2K heatmap over "
        "[p_1..p_K, n_1..n_K] (the GPRec paper's Figure 4), with the summary numbers over all "
        "groups and over the chosen ones: mean cos(p_i, n_i), and the mean and max "
        "off-diagonal cosine among the p's and among the n's. Writes similarity.png, "
        "similarity.json and similarity.md. Group ids are 0-based, as in `gprec groups report`.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished GPRec run directory")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--groups",
        type=int,
        metavar="K",
        help="draw K groups at random (default: 8, or all G if fewer)",
    )
    which.add_argument("--ids", metavar="I,J,...", help="the groups to show, e.g. 0,5,9")
    p.add_argument("--seed", type=int, default=0, help="seed of the random draw (default: 0)")
    p.add_argument("--out", "-o", help="output directory (default: RUN_DIR-groups beside the run)")
    p.set_defaults(handler=handle)


def parse_ids(text: str) -> list[int]:
    parts = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return [int(t) for t in parts]
    except ValueError:
        bad = next(t for t in parts if not t.lstrip("-").isdigit())
        raise ConfigError(f"--ids: {bad!r} is not a group number (give e.g. 0,5,9)") from None


def require_matplotlib(what: str) -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError(f"{what} needs matplotlib: pip install 'gprec[plots]'")


def handle(args) -> int:
    import io
    import json

    from gprec.cli.common import echo, output_dir
    from gprec.inspection import similarity as sim
    from gprec.inspection.runs import check_out, default_out, load_gprec_run
    from gprec.io import write_bytes_atomic, write_text_atomic

    ids = parse_ids(args.ids) if args.ids is not None else None
    require_matplotlib("the heatmap")
    run = load_gprec_run(args.run_dir, "groups similarity")
    out = output_dir(args.out if args.out is not None else default_out(run.path))
    check_out(out, run.path)
    P, N = run.model.group_embeddings()
    chosen = sim.choose_groups(len(P), args.groups, ids, args.seed)
    result = sim.similarity_study(P.numpy(), None if N is None else N.numpy(), chosen)
    result = {"run": str(run.path), "seed": None if ids is not None else args.seed} | result

    out.mkdir(parents=True, exist_ok=True)
    png, js, md = (out / f for f in FILES)
    title = f"{run.path.name}: cosine similarity of group embeddings"
    buf = io.BytesIO()
    sim.plot_heatmap(result, buf, title)
    write_bytes_atomic(png, buf.getvalue())
    write_text_atomic(js, json.dumps(result, indent=2) + "\n")
    write_text_atomic(md, sim.markdown(result, str(run.path), png.name))
    if not result["dual"]:
        echo("single group embeddings (no n_i): showing p_i only")
    print("\n".join(sim.summary_lines(result)))
    for f in (png, js, md):
        print(f"wrote {f}")
    return 0
