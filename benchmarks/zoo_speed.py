"""Training speed of every backbone, bare and under GPRec, against FuxiCTR's same model.

For each dataset (ML-100K, ML-1M) every registered backbone is trained bare and under GPRec
(`input`, or `ensemble` where the backbone declares no `input`) through `Trainer._train_epoch`
on the same training split (seed 2024), at 1 torch thread, with the trainer's own optimizer. The
models take turns epoch by epoch (round-robin), so a change in the machine's load hits all of
them alike; one warm-up epoch each is not timed, evaluation is not timed.

With `--fuxictr` (FuxiCTR 2.3.10 importable, its model_zoo given by `--fuxictr-zoo`; setup in
benchmarks/README.md) FuxiCTR's own model of each backbone joins the same round-robin, on the
same training rows, with the same warm-up and timed epochs (`fuxictr_models.py`: its model_zoo
class with issue 17's settings, trained by its own `train_step` and optimizer), twice:
`fuxictr-<name>` fed by its own in-memory loader (`RankDataLoader` over an npz of the rows,
batch 4096, shuffle), the primary comparison, and `fuxictr-<name>-tensors` fed prebuilt dicts of
column tensors, so the loader's share shows. The speed-up of each bare backbone is then against
the measured figure of its loader run; the target is at least 5x. Each FuxiCTR model must have
learned (training logloss after the timed epochs below its untrained first batch's) or the
script says so and exits 1. Without `--fuxictr` the speed-ups divide by FuxiCTR's figures
measured separately for issue 17 (`FUXICTR`, its model_zoo classes and in-memory loader, same
settings, 1 torch thread), and the Markdown says they are quoted; the JSON keeps those quoted
figures in either case.

Our bare models run with FuxiCTR's settings where ours differ (`FUXI_SETTINGS`: its linear
output layer; DESTINE's learned unary term and no ReLU before the output, which makes it exactly
FuxiCTR's). Not like for like: our AutoInt projects its residual in every layer where FuxiCTR
adds it unprojected when widths match (+33% FLOPs in layer 2: ours does more work). FuxiCTR also
clips gradients (norm 10) and runs torch's plain Adam. `--precisions fp32,bf16` adds each bare
backbone under `train.precision: bf16` (our option; FuxiCTR runs in float32 only), reported in
a column of its own.

    python benchmarks/zoo_speed.py --data-root ../shared/data --epochs 2
    python benchmarks/zoo_speed.py --fuxictr --fuxictr-zoo /tmp/FuxiCTR/model_zoo --epochs 2
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
from pathlib import Path

import torch

# The sibling benchmark owns the machine-load helpers; this script is run as a file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_vs_dataloader import (  # noqa: E402
    QUIET_SHARE,
    CpuMeter,
    busy_note,
    log,
    machine_info,
    summarise,
    wait_for_quiet,
    write_results,
)

from gprec.config import load_config  # noqa: E402
from gprec.data.dataset import load_dataset  # noqa: E402
from gprec.models.base import Backbone  # noqa: E402
from gprec.models.registry import available_models, build_model, model_class  # noqa: E402
from gprec.training.run import count_parameters  # noqa: E402
from gprec.training.trainer import Trainer, as_tensors, make_adam, seed_everything  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAME = "zoo_speed"
SEED = 2024
TARGET = 5.0
# samples/s of FuxiCTR 2.3.10 measured here at 1 thread (issue 17): (ML-100K, ML-1M).
FUXICTR = {
    "mlp": (163e3, 191e3),
    "deepfm": (129e3, 163e3),
    "dcn": (131e3, 150e3),
    "dcnv2": (77e3, 77e3),
    "gdcn": (64e3, 69e3),
    "finalmlp": (29e3, 31e3),
    "destine": (14.3e3, 14.9e3),
    "autoint": (9.4e3, 9.4e3),
}
# FuxiCTR's model where it differs from our defaults (issue 17's table): DCN and DCNv2 end in
# a linear layer over [x_L; h_L]; AutoInt+, DESTINE and GDCN as configured there match ours
# except the linear output layer of the attention / cross part.
FUXI_SETTINGS = {
    "dcn": ["model.head_units=[]"],
    "dcnv2": ["model.head_units=[]"],
    "autoint": ["model.head_units=[]"],
    # FuxiCTR's DESTINE: a learned unary term and no ReLU before its output layer.
    "destine": ["model.head_units=[]", "model.unary=official", "model.relu_output=false"],
}
DATASETS = {"ml-100k": "configs/ml-100k/mlp.yaml", "ml-1m": "configs/ml-1m/mlp.yaml"}
FX_LOADER, FX_TENSORS = "fuxictr-{}", "fuxictr-{}-tensors"


def configs_for(
    dataset: str,
    data_root: Path,
    models: list[str],
    precisions=("fp32",),
    gprec=True,
    extra: list[str] = (),
) -> dict:
    """Each backbone bare (FuxiCTR's settings), in each other precision as `<name>@<precision>`,
    and under GPRec (`input`, or `ensemble` where it declares no `input`)."""
    base = ROOT / DATASETS[dataset]
    data = [f"data.path={data_root / dataset}", f"train.seed={SEED}", "train.progress=false"]
    if dataset == "ml-1m" and not (data_root / dataset / "ratings.dat").is_file():
        data.append("data.ratings_file=ratings_no_timestamp.dat")
    out = {}
    for name in models:
        bare = [*data, f"model.name={name}", *FUXI_SETTINGS.get(name, [])]
        out[name] = load_config(base, bare)
        for precision in precisions:
            if precision != "fp32":
                out[f"{name}@{precision}"] = load_config(
                    base, [*bare, f"train.precision={precision}"]
                )
        if not gprec:
            continue
        strategy = "input" if "input" in model_class(name).gprec_strategies else "ensemble"
        gprec = ROOT / "configs" / dataset / f"gprec-{strategy}.yaml"
        out[f"gprec-{strategy}({name})"] = load_config(
            gprec, [*data, f"model.backbone.name={name}"]
        )
    for name in extra:  # other models by name on the dataset's MLP config, e.g. user modeling
        out[name] = load_config(base, [*data, f"model.name={name}"])
    return out


def fuxictr_runners(fx, data, models: list[str], args: argparse.Namespace) -> dict:
    """FuxiCTR's model of each backbone, fed by its loader and by tensor batches."""
    X, y = data.X["train"], data.y["train"]
    fmap = fx.feature_map(data.fields)
    loader = fx.make_loader(fmap, X, y, args.fuxictr_workers)
    runners = {}
    for name in fuxictr_models(fx, models):
        for key, feeding in ((FX_LOADER, fx.Feeding.LOADER), (FX_TENSORS, fx.Feeding.TENSORS)):
            model = fx.build_model(name, fmap, Path(args.fuxictr_zoo), SEED)
            runners[key.format(name)] = fx.FuxiRunner(
                name, model, fmap, X, y, feeding, loader, SEED
            )
    return runners


def fuxictr_models(fx, models: list[str]) -> list[str]:
    """The backbones that have a FuxiCTR counterpart (`fuxictr_models.MODELS`)."""
    return [m for m in models if m in fx.MODELS]


def fuxictr_info(fx, args: argparse.Namespace, models: list[str]) -> dict:
    models = fuxictr_models(fx, models)
    return {
        "measured": True,
        "version": fx.FUXICTR_INSTALLED,
        "version_note": fx.version_note(),
        "model_zoo": str(Path(args.fuxictr_zoo).resolve()),
        "classes": {m: fx.MODELS[m][1] for m in models},
        "settings": {m: fx.SETTINGS[m] for m in models},
        "common": fx.COMMON | fx.BASE_KWARGS,
        "batch_size": fx.BATCH_SIZE,
        "max_gradient_norm": fx.MAX_GRADIENT_NORM,
        "loader_num_workers": args.fuxictr_workers,
        "feedings": {
            FX_LOADER.format("<name>"): "FuxiCTR's RankDataLoader / NpzDataLoader over an npz "
            "of the training rows (in memory), batch 4096, shuffle=True; its shuffle, gather "
            "and collate are timed",
            FX_TENSORS.format("<name>"): "dicts of column tensors from a random permutation, "
            "built before each epoch's timer (no FuxiCTR loader)",
        },
    }


def run_dataset(dataset: str, args: argparse.Namespace, models: list[str], fx=None) -> dict:
    extra = args.extra.split(",") if args.extra else []
    configs = configs_for(
        dataset, Path(args.data_root), models, args.precisions.split(","), not args.no_gprec, extra
    )
    first = next(iter(configs.values()))
    data = load_dataset(first.data, SEED)
    X, y = as_tensors(data.X["train"], data.y["train"])
    fx_runners = fuxictr_runners(fx, data, models, args) if fx else {}
    log(
        f"{dataset}: {len(y)} training rows, {len(data.fields)} fields, {len(configs)} models"
        + (f" + {len(fx_runners)} FuxiCTR runs" if fx_runners else "")
    )
    epochs, modules, losses = {}, {}, {}  # epochs: name -> fn(epoch) -> (losses, seconds)
    for name, cfg in configs.items():
        seed_everything(SEED)
        model = build_model(cfg.model, data.fields)
        trainer = Trainer(model, cfg.train, log=lambda m: None)
        optimizer = make_adam(model.parameters(), cfg.train.lr, cfg.train.weight_decay)
        generator = seed_everything(SEED)
        epochs[name] = functools.partial(trainer._train_epoch, X, y, optimizer, generator)
        modules[name] = model
        if name in models:  # FuxiCTR's models of this backbone take their turns next to it
            for key in (FX_LOADER.format(name), FX_TENSORS.format(name)):
                if key in fx_runners:
                    epochs[key] = fx_runners[key].train_epoch
                    modules[key] = fx_runners[key].model
    for name, epoch_fn in epochs.items():
        epoch_fn(0)  # warm-up
        losses[name] = []
    quiet = wait_for_quiet(args.max_wait, QUIET_SHARE)
    meters = {name: [] for name in epochs}
    for epoch in range(1, args.epochs + 1):
        for name, epoch_fn in epochs.items():
            with CpuMeter() as m:
                loss, seconds = epoch_fn(epoch)
            m.seconds = seconds
            meters[name].append(m)
            losses[name].append(loss.get("bce", loss.get("loss")))
            log(f"  {dataset} epoch {epoch} {name}: {seconds:.3f}s{busy_note(m)}")
    col = list(DATASETS).index(dataset)
    results = {}
    for name, ms in meters.items():
        r = summarise(ms, len(y))
        r["parameters"] = count_parameters(modules[name])
        runner = fx_runners.get(name)
        if runner is None:
            r["model"] = configs[name].model
            r["precision"] = configs[name].train.precision
            r["backbone"] = backbone_of(name, models)
            r["train_bce_per_epoch"] = losses[name]
        else:
            r["library"] = f"fuxictr {fx.FUXICTR_INSTALLED}"
            r["backbone"] = runner.name
            r["fuxictr_class"] = fx.MODELS[runner.name][1]
            r["feeding"] = runner.feeding.value
            r["train_loss_per_epoch"] = losses[name]  # with its regularization, as it logs
            r["first_batch_logloss"] = runner.first_batch_logloss
            r["final_train_logloss"] = runner.logloss()
            r["learned"] = r["final_train_logloss"] < r["first_batch_logloss"]
            if not r["learned"]:
                log(
                    f"  WARNING: {name} did not learn: training logloss "
                    f"{r['final_train_logloss']:.5f} after the timed epochs, "
                    f"{r['first_batch_logloss']:.5f} on its first batch untrained"
                )
        results[name] = r
    for variant in [n for n in results if n in models or n.split("@")[0] in models]:
        r, name = results[variant], variant.split("@")[0]
        quoted = FUXICTR[name][col] if name in FUXICTR else None
        if FX_LOADER.format(name) in fx_runners:
            fx_loader = results[FX_LOADER.format(name)]["samples_per_second"]
            fx_tensors = results[FX_TENSORS.format(name)]["samples_per_second"]
            r["fuxictr_source"] = "measured"
            r["fuxictr_samples_per_second"] = fx_loader
            r["speedup_vs_fuxictr"] = r["samples_per_second"] / fx_loader
            r["fuxictr_tensors_samples_per_second"] = fx_tensors
            r["speedup_vs_fuxictr_tensors"] = r["samples_per_second"] / fx_tensors
            r["fuxictr_quoted_samples_per_second"] = quoted
        elif quoted is not None:
            r["fuxictr_source"] = "quoted"
            r["fuxictr_samples_per_second"] = quoted
            r["speedup_vs_fuxictr"] = r["samples_per_second"] / quoted
    for name, r in results.items():
        if name not in fx_runners:
            r["cost_vs_bare"] = (
                r["mean_seconds_per_epoch"] / results[r["backbone"]]["mean_seconds_per_epoch"]
            )
    shares = [r["max_others_cpu_share"] for r in results.values() if r["max_others_cpu_share"]]
    return {
        "train_rows": len(y),
        "models": models,
        "results": results,
        "waited_for_quiet": quiet,
        "contended": bool(shares) and max(shares) > QUIET_SHARE,
        "fuxictr": fuxictr_info(fx, args, models)
        if fx_runners
        else {"measured": False, "why": args.fuxictr_absent},
    }


def backbone_of(name: str, models: list[str]) -> str:
    """`dcn`, `dcn@bf16` and `gprec-input(dcn)` are all measurements of backbone `dcn`; an
    `--extra` model (trained by name on the MLP config) is compared with the MLP."""
    if name in models or "@" in name:
        return name.split("@")[0]
    if "(" in name:
        return name.split("(")[1].rstrip(")")
    return "mlp"


def is_fuxictr(r: dict) -> bool:
    return "library" in r


def fuxictr_measured(d: dict) -> bool:
    return d.get("fuxictr", {}).get("measured", False)


def markdown(res: dict) -> str:
    m = res["machine"]
    datasets = res["datasets"]
    measured = [k for k, d in datasets.items() if fuxictr_measured(d)]
    if measured and len(measured) == len(datasets):
        source = (
            "FuxiCTR's samples/s were measured in this run, its models taking their turns in "
            "the same round-robin on the same training rows (`--fuxictr`; its model_zoo classes "
            "with issue 17's settings, its own train_step and optimizer): the speed-up is "
            "against FuxiCTR fed by its own in-memory loader"
        )
    elif measured:
        source = (
            f"FuxiCTR's samples/s were measured side by side on {', '.join(measured)} (see "
            "each dataset) and quoted from issue 17's separate measurement on the others"
        )
    else:
        source = (
            "FuxiCTR's samples/s are quoted from issue 17's separate measurement at 1 thread, "
            "not measured in this run (FuxiCTR was not run: `--fuxictr` not given or FuxiCTR "
            "not installed): the speed-ups are indicative"
        )
    lines = [
        "## "
        + res.get(
            "title", "Training speed of every backbone, bare and under GPRec, vs FuxiCTR 2.3.10"
        ),
        "",
        "Timed epochs per model (per dataset below) taken in turns after one warm-up; batch "
        f"4096; {m['cpu_model']}, {m['torch_threads']} torch thread(s), torch {m['torch']}. "
        f"{source}; target >= {TARGET:g}x. "
        "Bare models use FuxiCTR's settings where ours differ (linear output layer: "
        f"{', '.join(sorted(FUXI_SETTINGS))}; DESTINE's learned unary term and no ReLU before "
        "its output). Rows in precision bf16 train under our `train.precision: bf16` "
        "(bfloat16 autocast of the forward pass; weights, optimizer and evaluation in "
        "float32) and are compared with FuxiCTR in float32, the only precision it runs in; "
        "their accuracy against float32 is in `zoo-accuracy/summary.md`.",
    ]
    failed = []
    for dataset, d in datasets.items():
        fxm = fuxictr_measured(d)
        fx_col = "FuxiCTR samples / s (measured)" if fxm else "FuxiCTR samples / s (quoted)"
        lines += [
            "",
            f"### {dataset} ({d['train_rows']:,} training rows, "
            f"{d.get('epochs_timed', 2)} timed epoch(s) per model)",
            "",
            f"| model | precision | parameters | s / epoch | samples / s | {fx_col} | speed-up | "
            f">= {TARGET:g}x | cost vs bare |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r in d["results"].items():
            if is_fuxictr(r):
                continue
            fx = r.get("fuxictr_samples_per_second")
            fx = "" if fx is None else f"{fx:,.0f}"
            if fxm and r.get("fuxictr_source") == "quoted":
                fx += " (quoted)"  # a backbone without a FuxiCTR model in fuxictr_models.py
            up = r.get("speedup_vs_fuxictr")
            ok = "" if up is None else ("yes" if up >= TARGET else "**no**")
            lines.append(
                f"| {name} | {r.get('precision', 'fp32')} | {r['parameters']:,} | "
                f"{r['mean_seconds_per_epoch']:.3f} | "
                f"{r['samples_per_second']:,.0f} | {fx} | "
                f"{'' if up is None else f'{up:.2f}x'} | {ok} | {r['cost_vs_bare']:.2f}x |"
            )
        if fxm:
            info = d["fuxictr"]
            note = f" **Note:** {info['version_note']}." if info.get("version_note") else ""
            lines += [
                "",
                f"FuxiCTR {info['version']} in the same round-robin (model_zoo classes: "
                f"{', '.join(f'{k} = {v}' for k, v in info['classes'].items())}). "
                "*Its loader*: `RankDataLoader` over an npz of the same rows, in memory, batch "
                f"4096, shuffle, num_workers={info['loader_num_workers']} (the speed-up above "
                "is against this). *Tensor batches*: the model fed prebuilt dicts of column "
                "tensors, no loader. Loader share: the part of its loader run's time that the "
                "tensor-batch run does not spend. Learned: training logloss after the timed "
                f"epochs, vs the untrained model's on its first batch.{note}",
                "",
                "| backbone | FuxiCTR parameters (ours) | its loader: s / epoch | samples / s | "
                "tensor batches: s / epoch | samples / s | loader share | quoted (issue 17) | "
                "ours vs tensor batches | learned |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for name in info["classes"]:
                ours = d["results"][name]
                a = d["results"][FX_LOADER.format(name)]
                b = d["results"][FX_TENSORS.format(name)]
                share = 1 - b["mean_seconds_per_epoch"] / a["mean_seconds_per_epoch"]
                quoted = ours.get("fuxictr_quoted_samples_per_second")
                learned = []
                for key, run in ((FX_LOADER, a), (FX_TENSORS, b)):
                    mark = "" if run["learned"] else " **NO**"
                    learned.append(
                        f"{run['first_batch_logloss']:.3f} -> {run['final_train_logloss']:.3f}"
                        f"{mark}"
                    )
                    if not run["learned"]:
                        failed.append(f"{dataset} {key.format(name)}")
                lines.append(
                    f"| {name} | {a['parameters']:,} ({ours['parameters']:,}) | "
                    f"{a['mean_seconds_per_epoch']:.3f} | {a['samples_per_second']:,.0f} | "
                    f"{b['mean_seconds_per_epoch']:.3f} | {b['samples_per_second']:,.0f} | "
                    f"{share:.0%} | {'' if quoted is None else f'{quoted:,.0f}'} | "
                    f"{ours['speedup_vs_fuxictr_tensors']:.2f}x | {' / '.join(learned)} |"
                )
        else:
            why = d.get("fuxictr", {}).get("why") or "an earlier run without --fuxictr"
            lines += ["", f"FuxiCTR's figures here are quoted (issue 17), not measured: {why}."]
        if d["contended"]:
            lines += ["", "**Warning:** other processes used the CPUs during timing."]
    if failed:
        lines += [
            "",
            f"**Warning:** FuxiCTR did not learn in {', '.join(failed)}: its figures there "
            "are not to be trusted.",
        ]
    return "\n".join(lines) + "\n"


def fuxictr_did_not_learn(res: dict) -> list[str]:
    return [
        f"{ds} {name}"
        for ds, d in res["datasets"].items()
        for name, r in d["results"].items()
        if is_fuxictr(r) and not r["learned"]
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--datasets", default="ml-100k,ml-1m")
    p.add_argument(
        "--models", default=None, help="comma-separated backbones to measure (default: all)"
    )
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument(
        "--precisions",
        default="fp32",
        help="comma-separated train.precision values for the bare backbones (fp32,bf16: each "
        "backbone also as <name>@bf16)",
    )
    p.add_argument("--no-gprec", action="store_true", help="the bare backbones only")
    p.add_argument("--title", help="the Markdown's heading (default: the zoo's)")
    p.add_argument(
        "--extra",
        default="",
        help="other registered models to time, by name on the dataset's MLP config (their "
        "cost is against the MLP, which --models must include), e.g. the user-modeling ones",
    )
    p.add_argument("--name", default=NAME, help=f"results file name under --out (default {NAME})")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-wait", type=float, default=600.0, help="seconds to wait for quiet")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument(
        "--fuxictr",
        action="store_true",
        help="train FuxiCTR's model of each backbone in the same round-robin (needs FuxiCTR "
        "installed and --fuxictr-zoo)",
    )
    p.add_argument(
        "--fuxictr-zoo",
        default=None,
        help="the model_zoo directory of a FuxiCTR checkout (its wheel has no model_zoo)",
    )
    p.add_argument(
        "--fuxictr-workers",
        type=int,
        default=0,
        help="num_workers of FuxiCTR's loader (default 0: it works in the timed process)",
    )
    args = p.parse_args(argv)
    backbones = available_models(Backbone)
    models = backbones if args.models is None else args.models.split(",")
    unknown = [m for m in models if m not in backbones]
    if unknown:
        p.error(f"--models: unknown backbone(s) {unknown}; known: {', '.join(backbones)}")
    if args.extra and "mlp" not in models:
        p.error("--extra models are timed against the MLP: include mlp in --models")
    datasets = args.datasets.split(",")
    if [d for d in datasets if d not in DATASETS]:
        p.error(f"--datasets: choose from {', '.join(DATASETS)}")
    fx = None
    args.fuxictr_absent = (
        "--fuxictr not given" if importlib.util.find_spec("fuxictr") else "FuxiCTR not installed"
    )
    if args.fuxictr:
        try:
            import fuxictr_models as fx
        except ImportError as e:
            p.error(f"--fuxictr needs FuxiCTR 2.3.10 importable ({e}); see benchmarks/README.md")
        if not args.fuxictr_zoo:
            p.error("--fuxictr needs --fuxictr-zoo DIR (a FuxiCTR checkout's model_zoo)")
        missing = [m for m in models if m not in fx.MODELS]
        if missing:
            log(f"no FuxiCTR model for {missing}: their speed-ups use the quoted figures")
        try:
            for m in fuxictr_models(fx, models):
                fx.zoo_class(Path(args.fuxictr_zoo), m)
        except (OSError, ImportError, AttributeError) as e:
            p.error(f"--fuxictr-zoo: {e}")
        if fx.version_note():
            log(f"WARNING: {fx.version_note()}")
    torch.set_num_threads(args.threads)
    # Datasets measured by an earlier run and not asked for now are kept, so ML-100K and ML-1M
    # can be measured at different times (each records its own epochs and quiet check).
    previous = Path(args.out) / f"{args.name}.json"
    kept = json.loads(previous.read_text())["datasets"] if previous.is_file() else {}
    measured = {}
    for d in datasets:
        measured[d] = run_dataset(d, args, models, fx) | {"epochs_timed": args.epochs}
    res = {
        "benchmark": NAME,
        **({"title": args.title} if args.title else {}),
        "target_speedup": TARGET,
        "fuxictr_samples_per_second": FUXICTR,
        "datasets": {d: measured.get(d) or kept[d] for d in DATASETS if d in measured or d in kept},
        "machine": machine_info(args.threads),
    }
    md = markdown(res)
    write_results(Path(args.out), args.name, res, md)
    print(md)
    failed = fuxictr_did_not_learn(res)
    if failed:
        log(f"FuxiCTR did not learn in {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
