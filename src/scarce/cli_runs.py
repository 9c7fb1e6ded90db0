"""The ``scarce`` commands that use a trained run: ``evaluate``, ``predict``, ``export``
(``ensemble``: cli_ensemble.py). Registered in :data:`scarce.cli.COMMANDS`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from scarce.errors import UserError, counted


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="top-1, top-5 (with more than 5 classes) and per-class accuracy of a run's weights"
    )
    p.add_argument("path", metavar="RUN_DIR_OR_WEIGHTS")
    p.add_argument("--data", default=None, help="dataset name or folder (default: the run's data)")
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument(
        "--out",
        default=None,
        help="JSON output (default: RUN_DIR/eval_<split>.json, eval_<split>_<weights>.json for weights other "
        "than best.safetensors; for other --data, eval_<data>_<split>.json; "
        "for a folder, eval_folder_<name>.json; -<hash> is added when another folder of that name "
        "was scored before)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)


def cmd_evaluate(args) -> int:
    from scarce.config import DataConfig
    from scarce.engine.evaluation import evaluate_run

    check_suffix("--out", args.out, ".json")
    data = DataConfig(name=args.data) if args.data else None
    result = evaluate_run(args.path, data, args.split, args.out, args.device, args.batch_size, args.workers)
    # top-5 of 5 classes or fewer is 1.0 by construction: shown only where it can say something;
    # balanced accuracy and macro-F1: what top-1 hides on imbalanced data
    keys = ("split", "top1", "top5", "balanced_accuracy", "macro_f1", "count")
    shown = [k for k in keys if k in result and (k != "top5" or len(result["per_class"]) > 5)]
    print(json.dumps({**({"data": args.data} if args.data else {}), **{k: result[k] for k in shown}}))
    support, f1 = result.get("support", {}), result.get("f1", {})
    for name, acc in result["per_class"].items():
        if acc is None:
            print(f"  {name:<24} no image")
            continue
        support_f1 = f"  {counted(int(support[name]), 'image')}, F1 {f1[name]:.4f}" if f1.get(name) is not None else ""
        print(f"  {name:<24} {acc:.4f}{support_f1}")
    if "file" in result:
        print(f"wrote {result['file']}")
    return 0


def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="class probabilities of a run on a split or folder (optionally with TTA)",
        description="Predict with a run's calibrated confidence. A flat folder of images "
        "(no class folders) given as --split or --data is predicted unlabelled (targets -1).",
    )
    p.add_argument("path", metavar="RUN_DIR_OR_WEIGHTS")
    p.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="image files: print each one's label, calibrated confidence and top-3 (no --out needed)",
    )
    p.add_argument("--data", default=None, help="dataset name or folder (default: the run's data)")
    p.add_argument("--split", default="test", help="train, val, test, or an image folder (default: test)")
    p.add_argument("--tta", type=int, default=1, metavar="N", help="views per image: 1 = no TTA (default 1)")
    p.add_argument(
        "--out", default=None, help="predictions file of a split (.npz: probs, ids, classes, targets, metadata)"
    )
    p.add_argument("--csv", default=None, help="also write id,label,confidence,top1..top5 as CSV")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="seed of the augmented TTA views")
    p.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave unreadable images out (listed in the predictions' metadata) instead of failing",
    )


def cmd_predict(args) -> int:
    from scarce.config import DataConfig
    from scarce.inference.predict import predict_run, summarize, write_predictions

    if args.images:
        return _predict_images(args)
    if args.out is None and args.csv is not None:
        raise UserError(f"--csv {args.csv} goes with --out FILE.npz: the predictions archive is written beside it")
    if args.out is None:
        raise UserError("give image files to print their labels, or --out FILE.npz to predict a split")
    check_output_names(args.out, args.csv)
    preds = predict_run(
        args.path,
        DataConfig(name=args.data) if args.data else None,
        args.split,
        args.tta,
        args.device,
        args.batch_size,
        args.workers,
        args.seed,
        args.skip_bad_images,
    )
    write_predictions(preds, args.out, args.csv)
    _note_if_uncalibrated(args.path)
    _note_if_views_repeat(args.path, args.tta)
    _note_if_single_view_temperature(args.path, preds.metadata)
    skipped = preds.metadata.get("skipped_images") or []
    for bad in skipped[:5]:
        print(f"skipped {bad['path']}: {bad['reason']}")
    print(
        f"{summarize(preds)}; wrote {args.out}"
        + (f" and {args.csv}" if args.csv else "")
        + (
            f"; skipped {len(skipped)} unreadable image{'' if len(skipped) == 1 else 's'} (listed in the metadata)"
            if skipped
            else ""
        )
    )
    return 0


def _note_if_views_repeat(path: str, views: int) -> None:
    """Say so on stderr when --tta asks for more views than the run's augmentation can make:
    the extra ones repeat the clean view (or its mirror), costing time and changing nothing."""
    from scarce.config import saved_config
    from scarce.engine.run_dir import resolve_weights
    from scarce.inference.tta import distinct_views

    if views <= 1:
        return
    run_dir, _ = resolve_weights(path)
    augment = saved_config(run_dir / "config.yaml").augment
    distinct = distinct_views(augment)
    if distinct is not None and views > distinct:
        why = (
            "flips but no RandAugment: views 2.. repeat the clean view and its mirror"
            if distinct == 2
            else ("neither flips nor RandAugment: every view is the clean one")
        )
        print(f"note: --tta {views}: the run trained with {why}; only {distinct} differ", file=sys.stderr)


def _note_if_single_view_temperature(path: str, metadata: dict) -> None:
    """Say so on stderr when a vote over views of a calibrated run used the single-view temperature
    (its val split could not be read here): a vote over views is less confident than one view."""
    from scarce.engine.calibrate import CALIBRATION_FILE
    from scarce.engine.run_dir import resolve_weights

    run_dir, _ = resolve_weights(path)
    views = metadata["tta_views"]
    if views > 1 and metadata["temperature_views"] == 1 and (run_dir / CALIBRATION_FILE).is_file():
        print(
            f"note: --tta {views}: no temperature fitted on val with {views} views (val not readable here); "
            "the single-view one is used, and a vote over views is less confident than it",
            file=sys.stderr,
        )


def _note_if_uncalibrated(path: str) -> None:
    """Say so on stderr when a run has no fitted temperature: its "calibrated" confidences are
    then the plain softmax (no val split, or training stopped before its final evaluation)."""
    from scarce.engine.calibrate import CALIBRATION_FILE
    from scarce.engine.run_dir import resolve_weights

    run_dir, _ = resolve_weights(path)  # as the prediction just made found it
    if not (run_dir / CALIBRATION_FILE).is_file():
        print(
            f"note: {run_dir} has no {CALIBRATION_FILE} (no val split, or training did not finish): "
            "confidences are the model's softmax, not calibrated",
            file=sys.stderr,
        )


def check_suffix(option: str, path: str | None, suffix: str) -> None:
    """Refuse an output name of another kind before any work: writing predictions to ``x.png``
    would replace that image with an archive."""
    if path is not None and Path(path).suffix.lower() != suffix:
        raise UserError(f"{option} {path}: expected a file name ending in {suffix}")


def check_output_names(out: str, csv: str | None) -> None:
    """predict's and ensemble's outputs: a predictions archive and its CSV."""
    check_suffix("--out", out, ".npz")
    check_suffix("--csv", csv, ".csv")


# predict's options for a split, with their defaults: with image files given, any of them set is refused
SPLIT_ONLY_OPTIONS = {"--data": None, "--split": "test", "--out": None, "--csv": None, "--workers": 2}


def options_set(args, defaults: dict[str, object]) -> list[str]:
    """The options among ``defaults`` (``{"--flag": default}``) given another value."""
    return [flag for flag, default in defaults.items() if getattr(args, flag[2:].replace("-", "_")) != default]


def _drop_bad_images(args) -> bool:
    """Every image decoded (after a prediction failed), so an unreadable one is named with train's
    reason (an empty file, a truncated one), how many more there are and the way past them; with
    --skip-bad-images they are left out and said so. False where every image reads."""
    from scarce.data.check import check_image
    from scarce.inference.predict import unreadable_image_message

    checks = {image: check_image(image) for image in args.images}
    bad = [image for image, check in checks.items() if not check.ok]
    if bad and not args.skip_bad_images:
        raise UserError(unreadable_image_message(bad[0], checks[bad[0]].reason, len(bad) - 1))
    for image in bad:
        print(f"skipped {image}: {checks[image].reason}")
    args.images = [image for image in args.images if checks[image].ok]
    if not args.images:
        raise UserError("none of the images could be read")
    return bool(bad)


def _predict_images(args) -> int:
    from scarce.api import load

    given = options_set(args, SPLIT_ONLY_OPTIONS)
    if given:
        raise UserError(
            f"predict IMAGE...: {', '.join(given)} only {'work' if len(given) > 1 else 'works'} with a split, "
            f"not with image files; to predict a "
            f"folder with them: scarce predict RUN --split FOLDER --out FILE.npz [--csv FILE.csv]"
        )
    if args.batch_size < 1:
        raise UserError(f"--batch-size: expected >= 1, got {args.batch_size}")
    folders = [image for image in args.images if Path(image).is_dir()]
    if folders:
        raise UserError(
            f"{folders[0]}: a folder, not an image file; to predict the images in it: "
            f"scarce predict RUN --split {folders[0]} --out FILE.npz"
        )
    if args.tta < 1:
        raise UserError(f"--tta: expected a number of views >= 1, got {args.tta}")
    classifier = load(args.path, args.device)
    try:  # each image decoded once; only a failure has them all checked (an image's views do not
        # depend on the others, so predicting the readable ones again gives what they would have got)
        result = classifier.predict(args.images, args.batch_size, tta=args.tta, seed=args.seed)
    except UserError:
        if not _drop_bad_images(args):
            raise  # not an unreadable file (e.g. a mode that cannot be converted): its own message
        result = classifier.predict(args.images, args.batch_size, tta=args.tta, seed=args.seed)
    _note_if_uncalibrated(args.path)
    _note_if_views_repeat(args.path, args.tta)
    width = max(len(str(p)) for p in args.images)
    for i, image in enumerate(args.images):
        top = "  ".join(f"{label} {p:.3f}" for label, p in result.top(i, 3))
        print(f"{str(image):<{width}}  {result.labels[i]:<16} {result.confidence[i]:.3f}   top-3: {top}")
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="the run's best weights as ONNX or TorchScript returning probabilities",
        description="The exported model takes normalised float images [B, C, H, W] and returns the "
        "run's calibrated probabilities; OUT.json beside it holds classes, mean, std and size.",
    )
    p.add_argument("path", metavar="RUN_DIR_OR_WEIGHTS")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    p.add_argument(
        "--out",
        default=None,
        help="output file (.onnx / .pt), or a folder (existing, or ending in /) for model.onnx / model.pt in it (default: RUN_DIR)",
    )


def cmd_export(args) -> int:
    from scarce.inference.export import describe_export, export_run

    run_dir = Path(args.path) if Path(args.path).is_dir() else Path(args.path).parent
    name = "model.onnx" if args.format == "onnx" else "model.pt"
    out = Path(args.out) if args.out else run_dir / name
    # --out FOLDER (an existing one, or a new one written with a trailing slash): the default name inside it
    folder = out.is_dir() or (args.out is not None and args.out.endswith(("/", os.sep)))
    out = out / name if folder else out
    check_suffix("--out", str(out), Path(name).suffix)  # never over an image or a file of the other format
    print(describe_export(export_run(args.path, out, args.format)))
    return 0
