"""``scarce ensemble``: plurality / soft / weighted votes over predictions files or trained runs.
Registered in :data:`scarce.cli.COMMANDS`."""

from __future__ import annotations

from scarce.cli_runs import check_output_names, options_set
from scarce.errors import UserError

# how runs given as members are predicted, with their defaults: refused when no member is a run
RUN_ONLY_OPTIONS = {"--split": "test", "--data": None, "--tta": 1, "--seed": 0}


def _add_ensemble(sub) -> None:
    p = sub.add_parser(
        "ensemble",
        help="plurality / soft voting over predictions files or run directories",
        description="Examples: scarce ensemble --base runs/b7 --members runs/b3 runs/b4 --threshold auto "
        "--out final.npz   |   scarce ensemble --base b7.npz --members b3.npz b4.npz --out final.npz. "
        "Run directories are predicted first (--split, --tta; their val splits too where --threshold auto or "
        "--method weighted needs them), into OUT_members/ beside --out.",
    )
    p.add_argument(
        "--base",
        default=None,
        help="base model's predictions file (.npz) or run directory: needed by plurality; for soft/weighted "
        "only one more member",
    )
    p.add_argument(
        "--members",
        nargs="+",
        required=True,
        help="members' predictions files, run directories or weights files in one; the base counts once, added first if absent",
    )
    p.add_argument("--method", default="plurality", help="plurality (default), soft or weighted")
    p.add_argument(
        "--threshold",
        default=None,
        help="plurality: keep the base's answer where its top probability "
        ">= this (0-1); 'auto' picks it on --val-base/--val-members (default 0.7)",
    )
    p.add_argument("--val-base", default=None, help="base model's labelled validation predictions")
    p.add_argument(
        "--val-members", nargs="+", default=None, help="members' validation predictions, same order as --members"
    )
    p.add_argument(
        "--weights",
        nargs="+",
        type=float,
        default=None,
        help="weighted: one per member (base first if not in --members); default: each member's validation accuracy",
    )
    p.add_argument("--out", required=True, help="output .npz (pred, ids, classes, targets, metadata[, probs])")
    p.add_argument(
        "--csv",
        default=None,
        help="also write id,label,confidence,top1..top5 as CSV (label: the ensemble's answer; confidence and "
        "top-k: the soft vote's probabilities, also for plurality, whose label can differ from top1)",
    )
    p.add_argument(
        "--show-thresholds",
        action="store_true",
        help="with --threshold auto: print the val accuracy of every threshold tried",
    )
    runs = p.add_argument_group("members given as run directories")
    runs.add_argument("--split", default="test", help="split (or image folder) to predict and vote on (default: test)")
    runs.add_argument("--data", default=None, help="dataset name or folder (default: each run's own data)")
    runs.add_argument("--tta", type=int, default=1, metavar="N", help="views per image (default 1: no TTA)")
    runs.add_argument("--seed", type=int, default=0, help="seed of the augmented TTA views")
    runs.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")


def cmd_ensemble(args) -> int:
    from scarce.config import DataConfig
    from scarce.inference.ensemble import check_vote_options, run_ensemble, validation_needs
    from scarce.inference.ensemble_runs import (
        PredictOptions,
        check_members_once,
        check_paths,
        is_run,
        members_folder,
        predict_runs,
    )

    check_output_names(args.out, args.csv)
    given = [args.base, *args.members]
    check_paths([*given, args.val_base, *(args.val_members or [])])
    check_members_once(args.members)
    check_vote_options(args.method, args.threshold, args.out, [*given, args.val_base, *(args.val_members or [])])
    runs = [p for p in given if p is not None and is_run(p)]
    given_options = options_set(args, RUN_ONLY_OPTIONS)
    if given_options and not runs:
        raise UserError(
            f"{', '.join(given_options)} {'apply' if len(given_options) > 1 else 'applies'} to members given as "
            f"run directories; these are predictions files"
        )
    options = PredictOptions(
        args.split, DataConfig(name=args.data) if args.data else None, args.tta, args.seed, args.device
    )
    folder = members_folder(args.out)
    val_base, val_members = args.val_base, args.val_members
    if runs and any(validation_needs(args.method, args.threshold, args.weights)) and not (val_base or val_members):
        if len(runs) < len([p for p in given if p is not None]):
            raise UserError(
                "choosing the threshold or weights on val needs --val-base/--val-members, or every member "
                "given as a run directory (its val split is predicted)"
            )
        # each run's own val split (the images its temperature was fitted on), whatever --data says
        val_base, *val_members = predict_runs(given, "val", options, folder, own_data=True)
    base, *members = predict_runs(given, args.split, options, folder)
    run_ensemble(
        base,
        members,
        method=args.method,
        threshold=args.threshold,
        val_base=val_base,
        val_members=val_members or None,
        weights=args.weights,
        out_path=args.out,
        csv_path=args.csv,
        show_thresholds=args.show_thresholds,
    )
    return 0
