"""The ``scarce`` command. Parses arguments, builds a typed config, calls components.

User mistakes (:class:`UserError`) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from scarce.cli_ensemble import _add_ensemble, cmd_ensemble
from scarce.cli_runs import _add_evaluate, _add_export, _add_predict, cmd_evaluate, cmd_export, cmd_predict
from scarce.cli_tools import (
    _add_augment,
    _add_compare,
    _add_data,
    _add_report,
    cmd_augment,
    cmd_compare,
    cmd_data,
    cmd_report,
    name_subcommands,
)
from scarce.errors import UserError, counted


def _config_help() -> str:
    from scarce.config import available_recipes, describe

    rows = describe()
    width = max(len(k) for k, _, _ in rows)
    lines = [f"  {k:<{width}}  {d:<14} {h}" for k, d, h in rows]
    return (
        "config keys (override as key=value; values are YAML):\n"
        + "\n".join(lines)
        + f"\n\nbuilt-in recipes: {', '.join(available_recipes())}"
    )


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from scratch",
        description="Train a timm model from scratch. Example: scarce train --recipe demo epochs=2",
        epilog=_config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipe", default=None, help="built-in recipe name or YAML file (default: built-in defaults)")
    p.add_argument(
        "--data",
        default=None,
        help="built-in dataset (demo, fashion-mnist), image-folder root with train/ [val/] [test/], or a folder "
        "of <class>/<image> (then the train split, as --train)",
    )
    p.add_argument("--train", dest="train_dir", default=None, help="train image folder")
    p.add_argument("--val", dest="val_dir", default=None, help="val image folder")
    p.add_argument("--test", dest="test_dir", default=None, help="test image folder")
    p.add_argument("--out", default=None, help="run directory (default: runs/<recipe>-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--keep-checkpoint",
        action="store_true",
        help="keep the resumable checkpoint when the run finishes (to extend it later with --resume "
        "RUN epochs=N); by default only the weights files stay",
    )
    p.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="skip unreadable images (count printed, list in RUN_DIR/bad_images.json) instead of failing",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=0.01")


def cmd_train(args) -> int:
    from scarce.config import load_config
    from scarce.data.splits import data_fields
    from scarce.engine.run_dir import new_run_dir, resume_config_path
    from scarce.engine.trainer import train

    extra: dict = {}
    data = {
        k: v for k, v in (("train", args.train_dir), ("val", args.val_dir), ("test", args.test_dir)) if v is not None
    }
    if args.data is not None:
        data.update(data_fields(args.data, train_given=args.train_dir is not None))
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
        cfg = load_config(resume_config_path(run_dir, f"--resume {run_dir}"), args.overrides, extra)
    else:
        cfg = load_config(args.recipe, args.overrides, extra)
    name = Path(args.recipe).stem if args.recipe else "run"
    with new_run_dir(run_dir if args.resume else args.out, name) as run_dir:
        # a progress bar on a terminal; in a log or CI only the one line per epoch
        summary = train(cfg, run_dir, resume=bool(args.resume), progress=not args.no_progress and sys.stderr.isatty())
    if summary:
        _print_summary(summary, run_dir)
    return 0


def _print_summary(summary: dict, run_dir: Path) -> None:
    """After training: best epoch, test scores, the worst classes, calibration warnings, next command."""
    best, test, cal = summary["best"], summary.get("test"), summary.get("calibration")
    from scarce.engine.saving import kept_weights

    kept = kept_weights(summary)
    print(
        f"{kept}: epoch {best['epoch']} ({best['weights']} weights, val top-1 {best['top1']:.4f}); "
        f"trained in {summary['train_seconds']:.0f} s"
        + ("; stopped early by patience" if summary.get("stopped_early") else "")
    )
    classes = json.loads((run_dir / "classes.json").read_text())["classes"]
    if test:
        top5 = f"  top-5: {test['top5']:.4f}" if len(classes) > 5 else ""  # with 5 classes or fewer it is 1
        print(
            f"test top-1: {test['top1']:.4f}{top5}  balanced accuracy: "
            f"{test['balanced_accuracy']:.4f}  macro-F1: {test['macro_f1']:.4f}  ({counted(test['count'], 'image')})"
        )
        metrics = json.loads((run_dir / "test_metrics.json").read_text())
        recalls = [(name, r) for name, r in metrics["recall"].items() if r is not None]  # None: no test image
        worst = sorted(recalls, key=lambda kv: kv[1])[:5]
        print("worst classes (test recall): " + ", ".join(f"{name} {r:.2f}" for name, r in worst))
    if cal and cal.get("ece_val_after", 0) > cal.get("ece_val_before", 1):
        print(
            f"calibration: the fitted temperature made val ECE worse ({cal['ece_val_before']:.3f} -> "
            f"{cal['ece_val_after']:.3f}); confidences are less reliable than usual"
        )
    if cal and cal.get("note"):
        print(f"calibration: {cal['note']}")
    elif cal and cal["n_val"] < 10 * len(classes):
        print(
            f"calibration: fitted on {cal['n_val']} val images (fewer than 10 per class); thresholds on "
            f"confidence are rough"
        )
    print(f"run directory: {run_dir}  (config.yaml, metrics.jsonl, best.safetensors, summary.json)")
    print(f"next: scarce report {run_dir}")


COMMANDS = {
    "train": (_add_train, cmd_train),
    "evaluate": (_add_evaluate, cmd_evaluate),
    "data": (_add_data, cmd_data),
    "predict": (_add_predict, cmd_predict),
    "ensemble": (_add_ensemble, cmd_ensemble),
    "report": (_add_report, cmd_report),
    "compare": (_add_compare, cmd_compare),
    "augment": (_add_augment, cmd_augment),
    "export": (_add_export, cmd_export),
}


def build_parser() -> argparse.ArgumentParser:
    from scarce import __version__

    parser = argparse.ArgumentParser(prog="scarce", description="Train image classifiers from scratch on scarce data.")
    parser.add_argument("--version", action="version", version=f"scarce {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    name_subcommands(sub)
    return parser


def _one_line(exc: UserError) -> str:
    """The error's own line: a UserError raised in a DataLoader worker (an image that broke
    after the scan, or evaluate/predict reading it) arrives with the worker's traceback."""
    lines = str(exc).strip().splitlines()
    prefix = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    if len(lines) > 1 and lines[-1].startswith(prefix):
        return lines[-1][len(prefix) :]
    return " ".join(lines)


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Arguments, with ``key=value`` overrides (``--out x epochs=2``) and predict's image files
    (``RUN --device cpu a.png``) accepted after options too: argparse stops collecting a
    positional list at the first option."""
    args, extra = parser.parse_known_args(argv)
    late = [e for e in extra if "=" in e and not e.startswith("-")] if hasattr(args, "overrides") else []
    late_images = [e for e in extra if not e.startswith("-")] if hasattr(args, "images") else []  # predict
    unknown = [e for e in extra if e not in late and e not in late_images]
    if unknown:
        parser.error(f"{args.command}: unrecognized arguments: {' '.join(unknown)}")
    if late:
        args.overrides = [*args.overrides, *late]  # in command-line order: the later value wins
    if late_images:
        args.images = [*args.images, *late_images]
    return args


def _terminated(signum: int, frame) -> None:
    from scarce.engine.faults import Interrupted

    raise Interrupted(f"interrupted ({signal.Signals(signum).name})", signum)


def main(argv: list[str] | None = None) -> int:
    args = _parse(build_parser(), argv)
    # SIGTERM (a scheduler, `kill`, torchrun stopping its workers) ends any command as Ctrl-C does:
    # one line and exit 143, also before training's own handler is installed (the up-front scan)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    try:
        code = COMMANDS[args.command][1](args)
        sys.stdout.flush()  # a closed pipe fails here, inside the try, not at interpreter exit
        return code
    except BrokenPipeError:  # the reader closed the pipe (`scarce evaluate RUN | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    except UserError as exc:
        print(f"scarce {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)  # 3: a training fault (non-finite loss, disk full)
    except OSError as exc:
        if exc.filename is None:
            raise
        # a path the user named that cannot be read or written: one line, not a traceback
        print(f"scarce {args.command}: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # the trainer's carries the signal and where to resume
        if not getattr(exc, "quiet", False):
            print(f"scarce {args.command}: {str(exc) or 'interrupted (SIGINT)'}", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
