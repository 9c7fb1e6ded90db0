"""The ``scarce`` commands that look at data and runs without training: ``data subset``,
``data check``, ``report``, ``augment preview``. Registered in :data:`scarce.cli.COMMANDS`."""

from __future__ import annotations

import argparse
from pathlib import Path

from scarce.errors import UserError, counted


def name_subcommands(sub) -> None:
    """A missing subcommand is then named by the list of them ("required: {subset,check}"), not by
    argparse's dest ("required: data_command"). Call after the subcommands are added."""
    sub.metavar = "{" + ",".join(sub.choices) + "}"


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="dataset tools")
    dsub = p.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("subset", help="VIPriors-style k-per-class split of an image folder, with a manifest")
    s.add_argument(
        "src",
        help="image folder of <class>/<image> (its train/ if it has one; test/ is copied whole), "
        "or a built-in dataset: demo, or fashion-mnist (written as PNGs: the sampled "
        "train/val and the official 10k test set)",
    )
    s.add_argument("dst", help="new folder for the subset (must not exist)")
    s.add_argument("--per-class", type=int, required=True, help="train images per class (>= 1)")
    s.add_argument("--val-per-class", type=int, default=0, help="val images per class, disjoint from train (default 0)")
    s.add_argument("--seed", type=int, default=0, help="seed of the per-class sampling")
    s.add_argument(
        "--link",
        default="copy",
        choices=["copy", "hard", "sym"],  # subset.LINK_MODES; importing it would load torch for --help
        help="how files reach dst: copy (default), hard (hard links: no extra space, but editing a "
        "file in place edits SRC's too; copies across filesystems) or sym (symbolic links: the same)",
    )
    c = dsub.add_parser(
        "check",
        help="scan a dataset: unreadable files, modes, sizes, class counts, duplicates across splits",
        description="Exit status: 0 no problem found, 1 problems found (unreadable images, "
        "duplicates across splits, identical images within a split, manifest paths outside the root, "
        "fewer than 2 classes), "
        "2 usage error (missing folder, empty class folder, classes differing between splits).",
    )
    c.add_argument(
        "data", help="built-in dataset, image-folder root with train/ (val/, test/), or a folder of <class>/<image>"
    )
    c.add_argument(
        "--max-mae", type=float, default=None, help="near-duplicate thumbnail difference in grey levels (default 4)"
    )
    c.add_argument("--json", default=None, help="also write the full report as JSON here")
    c.add_argument("--limit", type=int, default=20, help="rows listed per table (default 20)")
    name_subcommands(dsub)


def cmd_data(args) -> int:
    if args.data_command == "subset":
        from scarce.data.subset import make_subset

        made = make_subset(args.src, args.dst, args.per_class, args.val_per_class, args.seed, args.link)
        how = {"copy": "copied", "hard": "hard-linked", "sym": "symlinked"}.get(args.link, args.link)
        print(
            f"wrote {args.dst}: {made['classes']} classes, {made['train']} train, {made['val']} val, "
            f"{made['test']} test images ({how}, seed {made['seed']}); list of sources: {made['manifest']}"
        )
        skipped = made.get("skipped", [])  # fashion-mnist's arrays have no unreadable files
        if skipped:
            first = skipped[0]
            print(
                f"passed over {counted(len(skipped), 'unreadable image')} when sampling, drawing others "
                f"instead: {first['path']} ({first['reason']}){' ...' if len(skipped) > 1 else ''}"
            )
    if args.data_command == "check":
        return cmd_data_check(args)
    return 0


def cmd_data_check(args) -> int:
    """Exit 1 when the scan found problems, 0 when clean (usage errors: 2, via UserError)."""
    from scarce.config import DataConfig
    from scarce.data.check import check_dataset
    from scarce.data.check_text import format_report
    from scarce.data.duplicates import NEAR_MAE
    from scarce.data.splits import DEMO_ROOT, data_fields, resolve_splits
    from scarce.io import atomic_write_json

    if args.max_mae is not None and not 0 <= args.max_mae <= 255:
        raise UserError(f"--max-mae: expected grey levels in [0, 255] (0: exact duplicates only), got {args.max_mae}")
    root = DEMO_ROOT if args.data == "demo" else Path(args.data)
    # the folders as they are: no val split drawn from train (its images would be listed twice)
    data = DataConfig(**data_fields(args.data), val_fraction=0.0)
    report = check_dataset(
        resolve_splits(data),
        NEAR_MAE if args.max_mae is None else args.max_mae,
        manifest_root=None if args.data == "fashion-mnist" else str(root),
        data_name=args.data,
    )
    print(format_report(report, args.limit))
    if args.json:
        atomic_write_json(args.json, report)
    return 1 if report["problems"] else 0


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="HTML report of a run or of an ensemble (figures embedded; PNG copies beside it)",
        description="Examples: scarce report runs/demo-x   |   "
        "scarce report --ensemble final.npz --members a.npz b.npz c.npz",
    )
    p.add_argument("run_dir", nargs="?", default=None, metavar="RUN_DIR", help="a finished scarce run directory")
    p.add_argument("--ensemble", default=None, metavar="FINAL_NPZ", help="report on a `scarce ensemble` output")
    p.add_argument(
        "--members",
        nargs="+",
        default=None,
        help="--ensemble: the members' predictions files (default: the paths in its metadata)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="HTML file; PNGs are written beside it (default: RUN_DIR/report.html, <final>_report.html)",
    )
    p.add_argument(
        "--split",
        default="test",
        metavar="SPLIT|FOLDER",
        help="what the confusion matrix, per-class accuracy and reliability score: train, val, test (default), "
        "or an image folder of class subfolders (a run trained without a test split)",
    )
    p.add_argument("--device", default="auto", help="device for the predictions on --split (default: auto)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)


def cmd_report(args) -> int:
    if args.run_dir is not None and args.ensemble is not None:
        raise UserError("give either RUN_DIR or --ensemble FINAL_NPZ, not both")
    if args.run_dir is None and args.ensemble is None:
        raise UserError("give a RUN_DIR, or --ensemble FINAL_NPZ for an ensemble's report")
    if args.members and args.ensemble is None:
        raise UserError("--members goes with --ensemble FINAL_NPZ")
    if args.run_dir is not None and str(args.run_dir).lower().endswith(".npz"):
        raise UserError(
            f"{args.run_dir}: a predictions file, not a run; for an ensemble's: scarce report --ensemble {args.run_dir}"
        )
    if args.ensemble is not None:
        from scarce.report import build_ensemble_report

        out = build_ensemble_report(args.ensemble, args.members, args.out)
    else:
        from scarce.report import build_run_report

        out = build_run_report(args.run_dir, args.out, args.device, args.batch_size, args.workers, args.split)
    print(f"wrote {out} (and its PNGs beside it)")
    return 0


def _add_compare(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="finished runs side by side: one row per config (mean +- std over seeds), named by what differs",
        description="Examples: scarce compare runs/ce-s0 runs/ce-s1 runs/ra-s0 runs/ra-s1   |   scarce compare runs/ "
        "(every run below a folder). Runs that differ only in seed / data.split_seed share a row.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories, or folders holding runs")
    p.add_argument("--out", default=None, help="also write the table: .md, .csv or .json")


def cmd_compare(args) -> int:
    from scarce.report.compare import compare_runs, render

    formats = {".md": "md", ".csv": "csv", ".json": "json"}
    if args.out is not None and Path(args.out).suffix.lower() not in formats:
        raise UserError(f"--out {args.out}: expected a file name ending in .md, .csv or .json")
    rows, unfinished = compare_runs(args.runs)
    print(render(rows, "md"), end="")
    if unfinished:
        print(f"left out, not finished (no summary.json): {', '.join(map(str, unfinished))}")
    if args.out is not None:
        from scarce.io import atomic_write_text

        atomic_write_text(Path(args.out), render(rows, formats[Path(args.out).suffix.lower()]))
        print(f"wrote {args.out}")
    return 0


class _IntermixedParser(argparse.ArgumentParser):
    """Lets positionals follow options (``DATA --recipe R key=value --out F``): plain argparse
    takes all positionals from the first run of them and rejects the later ``key=value``."""

    _inner = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inner:  # parse_known_intermixed_args calls back into parse_known_args
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def _add_augment(sub) -> None:
    p = sub.add_parser("augment", help="augmentation tools")
    asub = p.add_subparsers(dest="augment_command", required=True, parser_class=_IntermixedParser)
    s = asub.add_parser(
        "preview",
        help="grid of training images as the pipeline produces them, and LSB Swap's bits",
        description="Example: scarce augment preview demo --recipe demo "
        "augment.randaugment=rand-m9-mstd0.5 augment.lsb_swap.enabled=true --out grid.png",
    )
    s.add_argument(
        "data",
        metavar="DATA",
        help="built-in dataset (demo, fashion-mnist), image-folder root or <class>/<image> folder",
    )
    s.add_argument("--recipe", default=None, help="built-in recipe name or YAML file (default: built-in defaults)")
    s.add_argument("--out", required=True, help="PNG file to write")
    s.add_argument("--images", type=int, default=8, help="images (columns) shown (default 8)")
    s.add_argument("--views", type=int, default=3, help="random training views per image (default 3)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. augment.re_prob=0.5")
    name_subcommands(asub)


def cmd_augment(args) -> int:
    from scarce.config import load_config
    from scarce.report.preview import augment_preview

    if args.images < 1 or args.views < 1:
        raise UserError(f"--images and --views: expected >= 1, got {args.images} and {args.views}")
    from scarce.data.splits import data_fields

    cfg = load_config(args.recipe, args.overrides, {"data": data_fields(args.data)})
    print(f"wrote {augment_preview(cfg, args.out, args.images, args.views, args.seed)}")
    return 0
