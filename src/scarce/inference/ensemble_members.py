"""The member files of ``scarce ensemble``: their voting order, the validation files paired with
them, one ``[M, N, C]`` stack of their probabilities, and what the labelled validation files
decide (the plurality threshold, per-member accuracies for weighting)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scarce.data.splits import SPLIT_NAMES
from scarce.errors import UserError
from scarce.inference.predictions import Predictions, load_predictions, read_ids, read_metadata
from scarce.inference.voting import choose_threshold

Log = Callable[[str], None]


def _first_missing(ids: np.ndarray, other: np.ndarray) -> tuple[int, str]:
    missing = ids[~np.isin(ids, other)]
    return len(missing), (str(missing[0]) if len(missing) else "")


def _prefix_hint(base: Predictions, member: Predictions) -> str:
    """Where the two files' ids differ by a leading folder (``test/cat/0.png`` vs ``cat/0.png``:
    one predicted a split of the data root, the other that folder as --split), say so."""
    a, b = str(base.ids[0]), str(member.ids[0])
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    if not longer.endswith("/" + shorter):
        return ""
    prefix = longer[: -len(shorter)]
    if {str(i).removeprefix(prefix) for i in (base.ids if longer == a else member.ids)} != {
        str(i) for i in (member.ids if longer == a else base.ids)
    }:
        return ""
    return (
        f"; the ids differ by a leading {prefix!r} ({a!r} vs {b!r}): the same images predicted as a split of the "
        f"data root and as a folder; predict both the same way (--split test, or --split FOLDER)"
    )


def align_predictions(base: Predictions, members: list[Predictions], names: list[str]) -> list[Predictions]:
    """Reorder each member's rows to the base's id order.

    Args:
        base, members: loaded predictions files.
        names: display names, one per file, the base first (``len(members) + 1``).

    Returns:
        New ``Predictions`` per member whose ``ids`` equal ``base.ids`` (unchanged
        members are returned as they are). Differing id sets, class lists, or known
        targets that disagree raise ``UserError`` naming both files.
    """
    if len(names) != len(members) + 1:
        want = len(members) + 1
        raise ValueError(f"names must hold the base's name then one per member ({want}), got {len(names)}")
    out = []
    for member, name in zip(members, names[1:]):
        out.append(_align_one(base, member, names[0], name))
    return out


def _align_one(base: Predictions, member: Predictions, base_name: str, name: str) -> Predictions:
    if len(member.classes) != len(base.classes) or (member.classes != base.classes).any():
        if len(member.classes) != len(base.classes):
            what = f"{len(member.classes)} classes vs {len(base.classes)}"
        else:
            i = int(np.flatnonzero(member.classes != base.classes)[0])
            what = f"class {i} is {str(member.classes[i])!r} vs {str(base.classes[i])!r}"
        raise UserError(f"{name} has different classes from {base_name} ({what})")
    if len(member.ids) == len(base.ids) and (member.ids == base.ids).all():
        idx = None
    else:
        extra, first = _first_missing(member.ids, base.ids)
        if extra:
            raise UserError(f"{name} has {extra} ids not in {base_name} (first: {first!r}){_prefix_hint(base, member)}")
        lacking, first = _first_missing(base.ids, member.ids)
        if lacking:
            raise UserError(f"{name} lacks {lacking} ids of {base_name} (first: {first!r})")
        order = np.argsort(member.ids, kind="stable")
        idx = order[np.searchsorted(member.ids, base.ids, sorter=order)]
    targets = member.targets if idx is None else member.targets[idx]
    clash = (targets >= 0) & (base.targets >= 0) & (targets != base.targets)
    if clash.any():
        i = int(np.flatnonzero(clash)[0])
        first = str(base.ids[i])
        raise UserError(f"{name} and {base_name} disagree on {int(clash.sum())} labels (first: id {first!r})")
    if idx is None:
        return member
    return Predictions(member.probs[idx], base.ids, member.classes, targets, member.metadata, member.path)


def ensemble_order(base: str, members: Sequence[str]) -> tuple[list[str], int]:
    """Member paths in voting order and the base's index in it (see module docstring)."""
    real = [os.path.realpath(m) for m in members]
    for i, m in enumerate(members):
        if real[i] in real[:i]:
            raise UserError(f"{m} is listed twice in --members; each model votes once")
    if os.path.realpath(base) in real:
        return list(members), real.index(os.path.realpath(base))
    return [base, *members], 0


def val_order(base: str, members: Sequence[str], val_base: str | None, val_members: Sequence[str]) -> list[str]:
    """Validation files paired with ``ensemble_order(base, members)``, by position."""
    if len(val_members) != len(members):
        raise UserError(
            f"--val-members has {len(val_members)} files but --members has {len(members)}; pair them in order"
        )
    order, base_index = ensemble_order(base, members)
    if len(order) > len(members):  # the base was added first: its val file comes from --val-base
        if val_base is None:
            raise UserError(f"{base} is not in --members, so --val-base is needed for its validation predictions")
        return [str(val_base), *map(str, val_members)]
    paired = str(val_members[base_index])
    if val_base is not None and os.path.realpath(val_base) != os.path.realpath(paired):
        raise UserError(
            f"--base is --members[{base_index}], so --val-base should be "
            f"--val-members[{base_index}] ({paired}), got {val_base}"
        )
    return [str(v) for v in val_members]


def _model_of(meta: dict) -> str | None:
    """The weights a predictions file was made with, as ``scarce predict`` records them."""
    return meta.get("weights") or meta.get("run_dir")


def check_val_pairs(order: Sequence[str], val_paths: Sequence[str]) -> None:
    """Validation files are paired with members by position; where both files record the
    model that made them, a pair of two different models is refused (swapped files would give
    each member another's accuracy weight and move the threshold, silently), and so is a pair
    predicted with other numbers of TTA views (a threshold chosen on one-view confidences would
    be applied to flatter averaged ones)."""
    for member, val in zip(order, val_paths):
        member_meta, val_meta = read_metadata(member), read_metadata(val)
        a, b = _model_of(member_meta), _model_of(val_meta)
        if a and b and os.path.realpath(a) != os.path.realpath(b):
            raise UserError(
                f"{val} was predicted by {b}, but the member it pairs with, {member}, by {a}; "
                f"give --val-members (and --val-base) in the order of --members"
            )
        views = member_meta.get("tta_views"), val_meta.get("tta_views")
        if None not in views and views[0] != views[1]:
            raise UserError(
                f"{val} was predicted with {views[1]} TTA view(s), the member it pairs with, {member}, with "
                f"{views[0]}: predict both with the same --tta"
            )


def load_stack(paths: Sequence[str], base_index: int) -> tuple[Predictions, np.ndarray]:
    """Load the files into one float32 ``[M, N, C]`` array, rows in the base's id order."""
    base = load_predictions(paths[base_index])
    stack = np.empty((len(paths), *base.probs.shape), dtype=np.float32)
    stack[base_index] = base.probs
    base.probs = stack[base_index]  # a view: the base's own copy can be freed
    for i, path in enumerate(paths):
        if i != base_index:  # one member at a time: peak memory is the stack + one file
            (member,) = align_predictions(base, [load_predictions(path)], [paths[base_index], path])
            stack[i] = member.probs
    return base, stack


def top1_accuracy(pred: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> float:
    return float((pred[mask] == targets[mask]).mean())


def _place(said: Any) -> Any:
    """A recorded data or split folder as one spelling (``heldout/`` and ``./heldout`` are one
    folder); split names and dataset names as they are."""
    if isinstance(said, str) and said not in SPLIT_NAMES and os.path.isdir(said):
        return os.path.realpath(said)
    return said


def check_held_out(val: Predictions, val_name: str, member_name: str) -> None:
    """Refuse validation predictions of the images the ensemble scores (the test files given
    again as --val-*): a threshold or weights chosen on them are tuned on the test answers.
    Ids alike are not enough where both files say what they predicted and it differs (folders
    given apart, ``--train a/ --val b/ --test c/``, may number their files alike)."""
    # ids and metadata only: the member's probabilities are read once, by load_stack
    shared = int(np.isin(val.ids, read_ids(member_name)).sum())
    said = [
        (_place(meta.get("data")), _place(meta.get("split"))) for meta in (val.metadata, read_metadata(member_name))
    ]
    same_file = os.path.realpath(val_name) == os.path.realpath(member_name)
    if shared and (same_file or None in said[0] or None in said[1] or said[0] == said[1]):
        raise UserError(
            f"{val_name} shares {shared} of its {len(val.ids)} images with {member_name}: a threshold or weights "
            f"chosen on them are tuned on the images the ensemble answers; give predictions of held-out "
            f"images (scarce predict RUN --split val)"
        )


def validation_choices(
    base_path: str,
    members: list[str],
    val_base: Any,
    val_members: Sequence[Any] | None,
    need_threshold: bool,
    need_weights: bool,
    log: Log,
    show_thresholds: bool = False,
) -> dict[str, Any]:
    """Threshold (and table), per-member accuracies and classes from labelled validation files.

    Reads nothing (returns ``{}``) unless the threshold or the weights come from them.
    """
    if not val_members or not (need_threshold or need_weights):
        return {}
    vb = None if val_base is None else str(val_base)
    val_paths = val_order(base_path, members, vb, [str(v) for v in val_members])
    order, base_index = ensemble_order(base_path, members)
    check_val_pairs(order, val_paths)
    vbase, vstack = load_stack(val_paths, base_index)
    check_held_out(vbase, val_paths[base_index], order[base_index])
    if not vbase.labelled.all():
        unknown = int((~vbase.labelled).sum())
        name = val_paths[base_index]
        raise UserError(f"{name}: {unknown} samples have no label (-1); validation predictions must be labelled")
    out: dict[str, Any] = {"classes": vbase.classes}
    if need_threshold:
        best, table = choose_threshold(vbase.probs, vstack, vbase.targets)
        out["threshold"], out["threshold_table"] = best, [row._asdict() for row in table]
        chosen = next(row for row in table if row.threshold == best)
        log(
            f"threshold auto: {best:.2f} (val accuracy {chosen.accuracy:.4f}, replaces {chosen.replaced:.2%} of the "
            f"base's val answers; every threshold tried: --show-thresholds, or threshold_table in the metadata)"
        )
        if show_thresholds:
            log("| threshold | val accuracy | replaced |\n| --- | --- | --- |")
            for row in table:
                mark = " <- chosen" if row.threshold == best else ""
                log(f"| {row.threshold:.2f} | {row.accuracy:.4f} | {row.replaced:.2%} |{mark}")
    if need_weights:
        y, mask = vbase.targets, vbase.labelled
        out["val_accuracy"] = [top1_accuracy(vstack[i].argmax(axis=1), y, mask) for i in range(len(vstack))]
    return out
