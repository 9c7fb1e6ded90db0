"""The paper's ensemble (Kim et al. 2020, Table 1) as one resumable command.

Five members, each trained with ``scarce train`` from the ``vipriors-effnet-b3`` recipe
with a model and image-size override; each predicts val and test with and without TTA,
which gives the paper's 10 voters; the plurality vote (``run_ensemble``) keeps the base
model's answer (EfficientNet-B7) where its calibrated confidence is >= 0.7.

| member | model | img_size | extra |
| --- | --- | --- | --- |
| b3 | efficientnet_b3 | 300 | |
| b3_lsb | efficientnet_b3 | 300 | augment.lsb_swap.enabled=true |
| b4 | efficientnet_b4 | 380 | |
| b5 | efficientnet_b5 | 456 | |
| b7 | efficientnet_b7 | 600 | (base) |

``--scale small`` runs the same sequence with tiny timm models at 16 px for 1 epoch on the
demo data (or ``--data``), for tests and a dry run. Layout of ``--out``::

    recipes/<member>.yaml           the member's resolved config
    members/<member>/               its run directory (summary.json when trained)
    predictions/<member>[_tta]_<split>.npz
    ensemble_test.npz, ensemble_test.csv, ensemble.json

Resuming: a member whose run dir has ``summary.json`` is not retrained (one with only
``state.json`` resumes training); existing predictions files are not recomputed; the
vote (seconds) is always redone. A rerun with another ``--data`` or ``--scale`` on the same
``--out`` is refused (its members were trained on other data, or at another scale).

    python -m scarce.workflows.paper --data /data/imagenet-50 --out runs/paper
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from scarce.config import load_config, save_config
from scarce.errors import UserError
from scarce.io import atomic_write_json

RECIPE = "vipriors-effnet-b3"


@dataclass(frozen=True)
class Member:
    name: str
    model: str
    img_size: int
    small_model: str
    overrides: tuple[str, ...] = ()


MEMBERS = (
    Member("b3", "efficientnet_b3", 300, "test_efficientnet"),
    Member("b3_lsb", "efficientnet_b3", 300, "test_efficientnet", ("augment.lsb_swap.enabled=true",)),
    Member("b4", "efficientnet_b4", 380, "test_resnet"),
    Member("b5", "efficientnet_b5", 456, "test_efficientnet"),
    Member("b7", "efficientnet_b7", 600, "test_resnet"),
)
BASE = "b7"
# Small scale: tiny models, 16 px, 1 epoch, CPU-friendly; seeds differ so that members
# sharing a tiny architecture still disagree somewhere.
SMALL = (
    "epochs=1",
    "batch_size=16",
    "data.img_size=16",
    "data.crop_pct=1.0",
    "data.num_workers=0",
    "amp=none",
    "channels_last=false",
    "sched.warmup_epochs=0",
    "ema.decay=0.9",
    "device=cpu",
)


def member_overrides(member: Member, index: int, scale: str) -> list[str]:
    """Dotted overrides of the recipe for ``member`` at ``scale`` ('full' or 'small')."""
    if scale == "small":
        return [*SMALL, f"model.name={member.small_model}", f"seed={index}", *member.overrides]
    return [f"model.name={member.model}", f"data.img_size={member.img_size}", *member.overrides]


def _member_config(member: Member, index: int, scale: str, data: str):
    return load_config(RECIPE, member_overrides(member, index, scale), {"data": {"name": data}})


def check_same_inputs(data: str, scale: str, out: Path) -> None:
    """Refuse to reuse members of ``out`` trained on other data or at another scale (their run
    directories' config.yaml tell), before anything is trained or written."""
    from scarce.config import saved_config
    from scarce.engine.run_dir import absolute_data_paths

    for index, member in enumerate(MEMBERS):
        saved_path = out / "members" / member.name / "config.yaml"
        if not saved_path.is_file():
            continue
        saved = saved_config(saved_path)
        had_data = absolute_data_paths(saved).data.name
        wanted = absolute_data_paths(_member_config(member, index, scale, data)).data.name
        if had_data != wanted:
            raise UserError(
                f"--data {wanted}: {out} was made with --data {had_data} ({saved_path}); rerun with that "
                f"--data to resume, or give another --out"
            )
        had_scale = "small" if saved.model.name == member.small_model else "full"
        if had_scale != scale:
            raise UserError(
                f"--scale {scale}: {out} was made with --scale {had_scale} ({saved_path}); rerun with "
                f"--scale {had_scale} to resume, or give another --out"
            )


def check_data(data: str, scale: str) -> None:
    """The data folder exists with the test split the vote is scored on (val may come from train):
    found before five members train rather than after."""
    from scarce.data.splits import BUILTIN_DATASETS, missing_split_error, resolve_splits

    if data in BUILTIN_DATASETS:  # fashion-mnist would be read (or fetched) here, not checked
        return
    cfg = _member_config(MEMBERS[0], 0, scale, data)
    splits = resolve_splits(cfg.data)
    if "test" not in splits:
        raise missing_split_error(cfg.data, "test", splits, ": the ensemble votes on test/")


def train_member(member: Member, index: int, scale: str, data: str, out: Path, log=print) -> Path:
    """Train (or resume, or skip) one member; returns its run directory."""
    from scarce.engine.trainer import train

    run_dir = out / "members" / member.name
    if (run_dir / "summary.json").is_file():
        log(f"[{member.name}] trained already ({run_dir / 'summary.json'})")
        return run_dir
    cfg = _member_config(member, index, scale, data)
    save_config(cfg, out / "recipes" / f"{member.name}.yaml")
    resume = (run_dir / "state.json").is_file()
    log(f"[{member.name}] {'resuming' if resume else 'training'} {cfg.model.name} at {cfg.data.img_size} px")
    train(cfg, run_dir, resume=resume, progress=False)
    return run_dir


def predict_member(
    run_dir: Path, name: str, split: str, views: int, out: Path, device: str, batch_size: int, log=print
) -> Path:
    """Predictions file of one member on one split (skipped when present with ``views`` views)."""
    from scarce.inference.predict import predict_run, summarize, write_predictions
    from scarce.inference.predictions import load_predictions

    path = out / "predictions" / f"{name}{'_tta' if views > 1 else ''}_{split}.npz"
    if path.is_file():  # a rerun with another --tta predicts again: the name does not say the views
        had = load_predictions(path).metadata.get("tta_views")
        if had == views:
            return path
        log(f"[{path.stem}] had {had} views, predicting {views}")
    from scarce.engine.hardware import device_name

    dev = device_name(device)
    preds = predict_run(run_dir, None, split, views, dev, batch_size, num_workers=0 if dev == "cpu" else 4)
    write_predictions(preds, path)
    log(f"[{path.stem}] {summarize(preds)}")
    return path


def run_paper_ensemble(
    data: str,
    out: str | Path,
    scale: str = "full",
    tta_views: int = 4,
    threshold: float | str = 0.7,
    base: str = BASE,
    device: str = "auto",
    batch_size: int = 64,
    log=print,
) -> dict:
    """Train the members, predict val/test with and without TTA, vote; returns the report."""
    from scarce.inference.ensemble import parse_threshold, run_ensemble

    if scale not in ("full", "small"):
        raise UserError(f"--scale: expected full or small, got {scale!r}")
    names = [m.name for m in MEMBERS]
    if base.removesuffix("_tta") not in names:
        raise UserError(f"--base '{base}': expected one of {', '.join(names)} (optionally with _tta)")
    if tta_views < 2:
        raise UserError(f"--tta: the paper's members need TTA views >= 2, got {tta_views}")
    if threshold is not None:
        parse_threshold(threshold)  # a bad --threshold is refused here, not after training
    out = Path(out)
    check_same_inputs(data, scale, out)
    check_data(data, scale)
    files: dict[str, dict[str, Path]] = {"val": {}, "test": {}}
    for index, member in enumerate(MEMBERS):
        run_dir = train_member(member, index, scale, data, out, log)
        for split in ("val", "test"):
            for views in (1, tta_views):
                key = member.name + ("_tta" if views > 1 else "")
                files[split][key] = predict_member(run_dir, member.name, split, views, out, device, batch_size, log)
    order = list(files["test"])
    report = run_ensemble(
        files["test"][base],
        [files["test"][k] for k in order],
        method="plurality",
        threshold=threshold,
        val_base=files["val"][base],
        val_members=[files["val"][k] for k in order],
        out_path=out / "ensemble_test.npz",
        csv_path=out / "ensemble_test.csv",
        log=log,
    )
    report.update(
        scale=scale,
        data=data,
        tta_views=tta_views,
        base_member=base,
        members_dirs={m.name: str(out / "members" / m.name) for m in MEMBERS},
    )
    atomic_write_json(out / "ensemble.json", report)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scarce.workflows.paper", description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="image-folder root with train/ val/ test/ (small scale: default demo)")
    p.add_argument("--out", required=True, help="output folder (members, predictions, vote); rerun to resume")
    p.add_argument("--scale", default="full", choices=("full", "small"))
    p.add_argument("--tta", type=int, default=None, help="TTA views per image (default: 4 full, 2 small)")
    p.add_argument("--threshold", default="0.7", help="plurality threshold, or 'auto' (chosen on val)")
    p.add_argument("--base", default=BASE, help="base member (default b7; b7_tta for its TTA predictions)")
    p.add_argument("--device", default="auto", help="prediction device (training uses the recipe's device)")
    p.add_argument("--batch-size", type=int, default=64, help="prediction batch size")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        data = args.data or ("demo" if args.scale == "small" else None)
        if data is None:
            raise UserError("--data: the full-scale ensemble needs an image-folder root (train/ val/ test/)")
        tta = args.tta or (2 if args.scale == "small" else 4)
        report = run_paper_ensemble(
            data, args.out, args.scale, tta, args.threshold, args.base, args.device, args.batch_size
        )
    except UserError as exc:
        print(f"paper ensemble: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: report[k] for k in ("n", "replaced", "accuracy") if k in report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
