"""The ``scarce`` command. Parses arguments, builds a typed config, calls components.

User mistakes (:class:`UserError`) print one line and exit with code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from scarce.cli_tools import _add_augment, _add_data, _add_report, cmd_augment, cmd_data, cmd_report
from scarce.errors import UserError


def _config_help() -> str:
    from scarce.config import available_recipes, describe
    rows = describe()
    width = max(len(k) for k, _, _ in rows)
    lines = [f"  {k:<{width}}  {d:<14} {h}" for k, d, h in rows]
    return ("config keys (override as key=value; values are YAML):\n" + "\n".join(lines)
            + f"\n\nbuilt-in recipes: {', '.join(available_recipes())}")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model from scratch",
                       description="Train a timm model from scratch. Example: scarce train --recipe demo epochs=2",
                       epilog=_config_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=None, help="built-in recipe name or YAML file (default: built-in defaults)")
    p.add_argument("--data", default=None, help="built-in dataset (demo, fashion-mnist) or image-folder root")
    p.add_argument("--train", dest="train_dir", default=None, help="train image folder")
    p.add_argument("--val", dest="val_dir", default=None, help="val image folder")
    p.add_argument("--test", dest="test_dir", default=None, help="test image folder")
    p.add_argument("--out", default=None, help="run directory (default: runs/<recipe>-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--keep-checkpoint", action="store_true",
                   help="keep the resumable checkpoint when the run finishes (to extend it later with --resume "
                        "RUN epochs=N); by default only the weights files stay")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="skip unreadable images (count printed, list in RUN_DIR/bad_images.json) instead of failing")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=0.01")


def cmd_train(args) -> int:
    from scarce.config import load_config
    from scarce.engine.trainer import train
    extra: dict = {}
    data = {k: v for k, v in (("name", args.data), ("train", args.train_dir), ("val", args.val_dir),
                              ("test", args.test_dir)) if v is not None}
    if args.skip_bad_images:
        data["skip_bad_images"] = True
    if data:
        extra["data"] = data
    if args.keep_checkpoint:
        extra["checkpoint"] = {"keep_at_end": True}
    if args.resume:
        run_dir = Path(args.resume)
        if args.recipe or args.out:
            raise UserError("--resume takes its recipe and directory from RUN_DIR; drop --recipe/--out")
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"--resume {run_dir}: no config.yaml there (not a scarce run directory, or the run was "
                            f"stopped before it started: run the original command again)")
        cfg = load_config(str(run_dir / "config.yaml"), args.overrides, extra)
    else:
        cfg = load_config(args.recipe, args.overrides, extra)
        name = Path(args.recipe).stem if args.recipe else "run"
        run_dir = Path(args.out) if args.out else Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    # a progress bar on a terminal; in a log or CI only the one line per epoch
    summary = train(cfg, run_dir, resume=bool(args.resume), progress=not args.no_progress and sys.stderr.isatty())
    if summary:
        _print_summary(summary, run_dir)
    return 0


def _print_summary(summary: dict, run_dir: Path) -> None:
    """After training: best epoch, test scores, the worst classes, calibration warnings, next command."""
    best, test, cal = summary["best"], summary.get("test"), summary.get("calibration")
    kept = "last" if summary.get("select") == "last" else "best"
    print(f"{kept}: epoch {best['epoch']} ({best['weights']} weights, val top-1 {best['top1']:.4f}); "
          f"trained in {summary['train_seconds']:.0f} s" + (f"; {summary['stopped_early']}" if summary.get("stopped_early") else ""))
    if test:
        print(f"test top-1: {test['top1']:.4f}  top-5: {test['top5']:.4f}  balanced accuracy: "
              f"{test['balanced_accuracy']:.4f}  macro-F1: {test['macro_f1']:.4f}  ({test['count']} images)")
        metrics = json.loads((run_dir / "test_metrics.json").read_text())
        worst = sorted(metrics["recall"].items(), key=lambda kv: kv[1] if kv[1] == kv[1] else 2.0)[:5]
        print("worst classes (test recall): " + ", ".join(f"{name} {r:.2f}" for name, r in worst))
    if cal and cal.get("ece_val_after", 0) > cal.get("ece_val_before", 1):
        print(f"calibration: the fitted temperature made val ECE worse ({cal['ece_val_before']:.3f} -> "
              f"{cal['ece_val_after']:.3f}); confidences are less reliable than usual")
    if cal and cal["n_val"] < 10 * len(json.loads((run_dir / "classes.json").read_text())["classes"]):
        print(f"calibration: fitted on {cal['n_val']} val images (fewer than 10 per class); thresholds on "
              f"confidence are rough")
    print(f"run directory: {run_dir}  (config.yaml, metrics.jsonl, best.safetensors, summary.json)")
    print(f"next: scarce report {run_dir}")


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="top-1, top-5 and per-class accuracy of a run's weights")
    p.add_argument("path", metavar="RUN_DIR_OR_WEIGHTS")
    p.add_argument("--data", default=None, help="dataset name or folder (default: the run's data)")
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument("--out", default=None, help="JSON output (default: RUN_DIR/eval_<split>.json)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)


def cmd_evaluate(args) -> int:
    from scarce.config import DataConfig
    from scarce.engine.evaluation import evaluate_run
    data = DataConfig(name=args.data) if args.data else None
    result = evaluate_run(args.path, data, args.split, args.out, args.device, args.batch_size, args.workers)
    print(json.dumps({k: result[k] for k in ("split", "top1", "top5", "count")}))
    for name, acc in result["per_class"].items():
        print(f"  {name:<24} {acc:.4f}")
    return 0


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="class probabilities of a run on a split or folder (optionally with TTA)",
                       description="Predict with a run's calibrated confidence. A flat folder of images "
                       "(no class folders) given as --split or --data is predicted unlabelled (targets -1).")
    p.add_argument("path", metavar="RUN_DIR_OR_WEIGHTS")
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image files: print each one's label, calibrated confidence and top-3 (no --out needed)")
    p.add_argument("--data", default=None, help="dataset name or folder (default: the run's data)")
    p.add_argument("--split", default="test", help="train, val, test, or an image folder (default: test)")
    p.add_argument("--tta", type=int, default=1, metavar="N", help="views per image: 1 = no TTA (default 1)")
    p.add_argument("--out", default=None, help="predictions file of a split (.npz: probs, ids, classes, targets, metadata)")
    p.add_argument("--csv", default=None, help="also write id,label,confidence,top1..top5 as CSV")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="seed of the augmented TTA views")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave unreadable images out (listed in the predictions' metadata) instead of failing")


def cmd_predict(args) -> int:
    from scarce.config import DataConfig
    from scarce.inference.predict import predict_run, summarize, write_predictions
    if args.images:
        return _predict_images(args)
    if args.out is None:
        raise UserError("scarce predict: give image files to print their labels, or --out FILE.npz for a split")
    preds = predict_run(args.path, DataConfig(name=args.data) if args.data else None, args.split, args.tta,
                        args.device, args.batch_size, args.workers, args.seed, args.skip_bad_images)
    write_predictions(preds, args.out, args.csv)
    skipped = preds.metadata.get("skipped_images") or []
    for bad in skipped[:5]:
        print(f"skipped {bad['path']}: {bad['reason']}")
    print(f"{summarize(preds)}; wrote {args.out}" + (f" and {args.csv}" if args.csv else "")
          + (f"; skipped {len(skipped)} unreadable images (listed in the metadata)" if skipped else ""))
    return 0


def _predict_images(args) -> int:
    from scarce.api import load
    if args.batch_size < 1:
        raise UserError(f"--batch-size: expected >= 1, got {args.batch_size}")
    if args.skip_bad_images:
        from scarce.data.check import check_image
        checks = {image: check_image(image) for image in args.images}
        for image, check in checks.items():
            if not check.ok:
                print(f"skipped {image}: {check.reason}")
        args.images = [image for image in args.images if checks[image].ok]
        if not args.images:
            raise UserError("scarce predict: none of the images could be read")
    result = load(args.path, args.device).predict(args.images, batch_size=args.batch_size)
    width = max(len(str(p)) for p in args.images)
    for i, image in enumerate(args.images):
        top = "  ".join(f"{label} {p:.3f}" for label, p in result.top(i, 3))
        print(f"{str(image):<{width}}  {result.labels[i]:<16} {result.confidence[i]:.3f}   top-3: {top}")
    return 0


def _add_ensemble(sub) -> None:
    p = sub.add_parser("ensemble", help="plurality / soft voting over predictions files")
    p.add_argument("--base", required=True, help="base model's predictions file (.npz)")
    p.add_argument("--members", nargs="+", required=True,
                   help="members' predictions files; the base counts once, added first if absent")
    p.add_argument("--method", default="plurality", help="plurality (default), soft or weighted")
    p.add_argument("--threshold", default="0.7", help="plurality: keep the base's answer where its top probability "
                   ">= this; 'auto' picks it on --val-base/--val-members (default 0.7)")
    p.add_argument("--val-base", default=None, help="base model's labelled validation predictions")
    p.add_argument("--val-members", nargs="+", default=None, help="members' validation predictions, same order as --members")
    p.add_argument("--weights", nargs="+", type=float, default=None, help="weighted: one per member (base first if "
                   "not in --members); default: each member's validation accuracy")
    p.add_argument("--out", required=True, help="output .npz (pred, ids, classes, targets, metadata[, probs])")
    p.add_argument("--csv", default=None, help="also write id,label,confidence,top1..top5 as CSV")
    p.add_argument("--show-thresholds", action="store_true",
                   help="with --threshold auto: print the val accuracy of every threshold tried")


def cmd_ensemble(args) -> int:
    from scarce.inference.ensemble import run_ensemble
    run_ensemble(args.base, args.members, method=args.method, threshold=args.threshold, val_base=args.val_base,
                 val_members=args.val_members, weights=args.weights, out_path=args.out, csv_path=args.csv,
                 show_thresholds=args.show_thresholds)
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="the run's best weights as ONNX or TorchScript returning probabilities",
                       description="The exported model takes normalised float images [B, C, H, W] and returns the "
                       "run's calibrated probabilities; OUT.json beside it holds classes, mean, std and size.")
    p.add_argument("path", metavar="RUN_DIR_OR_WEIGHTS")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    p.add_argument("--out", default=None, help="output file (default: RUN_DIR/model.onnx or model.pt)")


def cmd_export(args) -> int:
    from scarce.inference.export import describe_export, export_run
    run_dir = Path(args.path) if Path(args.path).is_dir() else Path(args.path).parent
    out = Path(args.out) if args.out else run_dir / ("model.onnx" if args.format == "onnx" else "model.pt")
    print(describe_export(export_run(args.path, out, args.format)))
    return 0


COMMANDS = {"train": (_add_train, cmd_train), "evaluate": (_add_evaluate, cmd_evaluate),
            "data": (_add_data, cmd_data),
            "predict": (_add_predict, cmd_predict), "ensemble": (_add_ensemble, cmd_ensemble)}
COMMANDS.update({"report": (_add_report, cmd_report), "augment": (_add_augment, cmd_augment),
                 "export": (_add_export, cmd_export)})


def build_parser() -> argparse.ArgumentParser:
    from scarce import __version__
    parser = argparse.ArgumentParser(prog="scarce", description="Train image classifiers from scratch on scarce data.")
    parser.add_argument("--version", action="version", version=f"scarce {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def _one_line(exc: UserError) -> str:
    """The error's own line: a UserError raised in a DataLoader worker (an image that broke
    after the scan, or evaluate/predict reading it) arrives with the worker's traceback."""
    lines = str(exc).strip().splitlines()
    prefix = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    if len(lines) > 1 and lines[-1].startswith(prefix):
        return lines[-1][len(prefix):]
    return " ".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except UserError as exc:
        print(f"scarce {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)  # 3: a training fault (non-finite loss, disk full)
    except KeyboardInterrupt as exc:  # the trainer's carries the signal and where to resume
        print(f"scarce {args.command}: {str(exc) or 'interrupted (SIGINT)'}", file=sys.stderr)
        return getattr(exc, "exit_code", 130)


if __name__ == "__main__":
    sys.exit(main())
