"""``scarce export``: a run's best weights as a self-contained ONNX or TorchScript model.

The exported model takes normalised float images ``[B, C, H, W]`` (``(x / 255 - mean) / std``
with the mean and std in ``classes.json``, at ``data.img_size``) and returns calibrated
probabilities ``[B, num_classes]``: the run's prediction source and fitted temperature are
part of the graph, so its answers equal ``scarce predict``'s where that scores in float32. The
export always computes in float32; a run that ``scarce predict`` scores under bf16 autocast (as it
trained, on a CPU with native bf16) differs from it by the rounding of bf16 (up to ~1e-2 in a
probability): the ``.json`` names both (``computes_in``, ``scarce_predict_amp``).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from scarce.errors import UserError

FORMATS = ("onnx", "torchscript")


class ProbabilitiesModel(nn.Module):
    """``x [B, C, H, W]`` (normalised) -> probabilities ``[B, K]`` of a loaded run."""

    def __init__(self, model: nn.Module, source: str, temperature: float):
        super().__init__()
        self.model, self.source, self.temperature = model, source, float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from scarce.models.heads import prediction_probs

        return prediction_probs(self.model(x), source=self.source, temperature=self.temperature)


def export_run(path: str | os.PathLike, out: str | os.PathLike, fmt: str = "onnx") -> Path:
    """Write ``out`` (and ``out``.json with classes, mean, std, image size) -> ``out``."""
    from scarce.engine.evaluation import load_run
    from scarce.engine.factories import prediction_source
    from scarce.io import atomic_path, atomic_write_json

    if fmt not in FORMATS:
        raise UserError(f"--format '{fmt}': expected one of {', '.join(FORMATS)}")
    run = load_run(path, "cpu")
    wrapped = ProbabilitiesModel(run.model.eval(), prediction_source(run.cfg), run.temperature).eval()
    size = run.cfg.data.img_size
    example = torch.zeros(2, len(run.mean), size, size)
    out = Path(out)
    with atomic_path(out) as tmp, torch.no_grad(), warnings.catch_warnings():
        # head g's check of the backbone's output shape is a Python bool while tracing (a
        # TracerWarning): it holds for every input of the exported size, nothing a user can act on
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        if fmt == "torchscript":
            # torch marks torch.jit.trace deprecated (a FutureWarning per traced method): TorchScript
            # is the format the user asked for, and the warning is nothing they can act on
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
            traced = torch.jit.trace(wrapped, example)
            traced.save(str(tmp))
        else:
            try:
                import onnx  # noqa: F401
            except ImportError:
                raise UserError("--format onnx needs the onnx package: pip install 'scarce[export]'") from None
            torch.onnx.export(
                wrapped,
                (example,),
                str(tmp),
                input_names=["images"],
                output_names=["probs"],
                dynamic_axes={"images": {0: "batch"}, "probs": {0: "batch"}},
                dynamo=False,
            )
    atomic_write_json(
        out.with_name(out.name + ".json"),
        {
            "classes": run.classes,
            "mean": run.mean,
            "std": run.std,
            "img_size": size,
            "mode": run.mode,
            "crop_pct": run.cfg.data.crop_pct,
            "small_images": run.cfg.data.small_images,
            "bit_depth": run.cfg.data.bit_depth,
            "preprocess": eval_view_recipe(size, run.cfg.data.crop_pct, run.cfg.data.small_images),
            "input": "float [B, C, img_size, img_size] = (uint8 / 255 - mean) / std",
            "colour": f"images converted to {run.mode} (EXIF orientation applied; transparency composited "
            "on white; 16-bit scaled to 8-bit: 2^bit_depth - 1 is white; bit_depth null: per image, the smallest "
            "of 8/10/12/14/16 bits that holds its largest value)",
            "output": "probabilities [B, K]",
            "source": prediction_source(run.cfg),
            "temperature": run.temperature,
            "computes_in": "float32",
            "scarce_predict_amp": run.amp,  # on this machine's CPU: bf16 where the run trained so
            "weights": str(run.weights),
        },
    )
    return out


def eval_view_recipe(size: int, crop_pct: float, small_images: str) -> str:
    """In words, the evaluation view the exported model expects (``EvalTransform``)."""
    resize = round(size / crop_pct)
    view = (
        f"resize the shorter side to {resize} px and the longer in proportion, rounded down (bilinear, "
        f"antialiased), centre-crop {size} x {size}"
    )
    if small_images == "pad":
        view = f"images no larger than {size} px: zero-pad around them to {size} x {size}; others: " + view
    return view


def describe_export(out: Path) -> str:
    meta = json.loads(out.with_name(out.name + ".json").read_text())
    return f"wrote {out} ({len(meta['classes'])} classes, input {meta['img_size']} px) and {out.name}.json"
