"""What a resumed run keeps, and the checks that refuse a resume (or an evaluation of a run's val
split) whose data or config no longer match what the run was trained on."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from scarce.config import Config
from scarce.data.check import unreadable_train_files
from scarce.data.datasets import Split
from scarce.engine.run_dir import absolute_data_paths
from scarce.errors import UserError
from scarce.io import atomic_write_text, read_json, read_jsonl

RESUMES_FILE = "resumes.jsonl"  # one line per resume that changed the config: {"start_epoch", "changed"}


def _saved_epochs(run_dir: Path) -> int | str | None:
    from scarce.config_yaml import load_yaml

    return (load_yaml((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}).get("epochs")


def finished_run(run_dir: Path, resume: bool, cfg: Config) -> dict | None:
    """The summary of a finished run that ``--resume`` asks for with the epochs it trained
    (a resume that lands after the run ended, e.g. a job requeued at its end): nothing to do.
    Its config is checked as any resume's is (a key it keeps is refused); others are ignored, and said so."""
    if not (resume and (run_dir / "summary.json").is_file() and not (run_dir / "state.json").is_file()):
        return None
    saved = _saved_epochs(run_dir)
    if isinstance(saved, int) and isinstance(cfg.epochs, int) and cfg.epochs < saved:
        raise UserError(f"--resume {run_dir}: epochs={cfg.epochs} is fewer than the {saved} the run trained")
    if saved != cfg.epochs:
        return None
    changes = check_resume_config(run_dir, cfg)
    ignored = f" (ignored: {describe_changes(changes)})" if changes else ""
    print(f"--resume {run_dir}: the run has finished ({cfg.epochs} epochs); nothing to do{ignored}", flush=True)
    return read_json(run_dir / "summary.json")


def check_same_classes(run_dir: Path, classes: list[str]) -> None:
    """A resume trains on the classes the run was started with, in the same order."""
    path = run_dir / "classes.json"
    if not path.is_file():
        return
    saved = read_json(path).get("classes")
    if saved != classes:
        raise UserError(
            f"--resume {run_dir}: the data's classes {classes[:5]}... differ from the run's "
            f"{(saved or [])[:5]}... (classes.json); resume with the run's data"
        )


def recorded_unreadable(run_dir: Path) -> list[str]:
    """The train-folder files a run skipped as unreadable (``bad_images.json``): its val draw from
    train left them out, so a draw made again must leave them out too."""
    path = run_dir / "bad_images.json"
    if not path.is_file():
        return []
    records = read_json(path)
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and isinstance(r.get("split"), str) and isinstance(r.get("path"), str) for r in records
    ):
        raise UserError(f"{path}: expected a list of {{split, path, reason}} records (a damaged or edited file?)")
    return unreadable_train_files(records)


def check_val_as_drawn(run_dir: Path, val: Split | None, what: str) -> None:
    """A val split taken from the train folder is drawn again from the folder as it is now. When
    that draw differs from the one the run recorded (classes.json ``val_from_train``), the folder
    changed: the new val would hold images the run trained on. Any other ``val`` (None, a val
    folder, a built-in dataset's) passes."""
    path = run_dir / "classes.json"
    if val is None or not val.from_train or not path.is_file():
        return
    recorded = read_json(path).get("val_from_train")
    if recorded is None or sorted(val.ids) == sorted(recorded):
        return
    changed = len(set(val.ids) ^ set(recorded))
    raise UserError(
        f"{what}: the train folder changed since the run took its val split from it ({changed} val images differ "
        f"from classes.json's val_from_train), so val would now hold trained images; restore the folder as it was, "
        f"or give a folder of unseen images (--split FOLDER)"
    )


def trim_metrics(run_dir: Path, start_epoch: int) -> None:
    """Drop metrics rows of epochs that will be trained again (after a kill or a fault) and a
    torn last line, which the next append would otherwise run into."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return
    keep = [r for r in read_jsonl(path) if isinstance(r.get("epoch"), int) and r["epoch"] < start_epoch]
    text = "".join(json.dumps(r) + "\n" for r in keep)
    if text != path.read_text(encoding="utf-8"):
        atomic_write_text(path, text)


# What a resumed run keeps: the weights' shapes (model), which images in which form (data),
# what the outputs mean (loss), the steps per epoch (batch size), its random streams (seed) and
# the optimizer's state: its kind (another one's moments are missing or lost) and its parameter
# groups (decay_norm_and_bias splits them; see also _check_weight_decay). Epochs, lr, weight
# decay, augmentation, threads and checkpoint settings may change (to extend a run, or to
# recover from a fault); such changes are printed and recorded in resumes.jsonl.
FIXED_ON_RESUME = (
    "model.",
    "batch_size",
    "seed",
    "loss.name",
    "optim.name",
    "optim.decay_norm_and_bias",
    *(
        f"data.{k}"
        for k in (
            "name",
            "train",
            "val",
            "test",
            "root",
            "img_size",
            "crop_pct",
            "small_images",
            "channels",
            "normalize",
            "per_class",
            "val_per_class",
            "split_seed",
            "val_fraction",
            "bit_depth",
            "keep_last_batch",  # the steps per epoch, as batch_size
        )
    ),
)


def check_resume_config(run_dir: Path, cfg: Config) -> dict[str, list]:
    """Refuse a resume whose config changes what the checkpoint was trained as (one line
    naming the first such key), before anything is loaded or written; returns the keys it
    may change that it does change, ``{key: [saved, new]}``."""
    from scarce.config import config_to_dict, flat_keys, saved_config

    # read as saved, without load_config's checks: runs from before data.per_class was refused
    # beside a folder saved it there, where it never had an effect
    saved_cfg = saved_config(run_dir / "config.yaml")
    if saved_cfg.data.name != "fashion-mnist":
        saved_cfg.data = replace(saved_cfg.data, per_class=None, val_per_class=None)
    saved = flat_keys(config_to_dict(absolute_data_paths(saved_cfg)))
    new = flat_keys(config_to_dict(absolute_data_paths(cfg)))
    for key, value in saved.items():
        if key.startswith(FIXED_ON_RESUME) and new.get(key) != value:
            raise UserError(
                f"--resume {run_dir}: {key}={new.get(key)!r} differs from the run's {value!r}; a resumed run keeps "
                f"its model, data, loss, optimizer, batch size and seed (train a new run with --out instead)"
            )
    _check_weight_decay(run_dir, saved, new)
    return {key: [value, new.get(key)] for key, value in saved.items() if new.get(key) != value}


def _check_weight_decay(run_dir: Path, saved: dict, new: dict) -> None:
    """Without decay on norm weights and biases, timm puts them in a parameter group of their own
    only when the weight decay is not 0: a change to or from 0 would not fit the saved groups."""
    old_decay, new_decay = saved.get("optim.weight_decay"), new.get("optim.weight_decay")
    if not saved.get("optim.decay_norm_and_bias") and (old_decay == 0) != (new_decay == 0):
        raise UserError(
            f"--resume {run_dir}: optim.weight_decay={new_decay!r} differs from the run's {old_decay!r}; with "
            f"optim.decay_norm_and_bias=false a resumed run may change the weight decay but not to or from 0 "
            f"(that changes the optimizer's parameter groups)"
        )


def describe_changes(changes: dict[str, list]) -> str:
    """``key saved -> new, ...`` for :func:`check_resume_config`'s changes."""
    return ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items())
