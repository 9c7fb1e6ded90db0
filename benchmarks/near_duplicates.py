"""Why ``scarce data check`` confirms dHash candidates with a thumbnail difference.

On the demo data (Fashion-MNIST, 28 px; 500 train x 1000 test images) it measures, side by
side: how many train/test pairs a 64-bit dHash alone flags at several radii, how far apart
(in dHash bits and in thumbnail grey levels) true near copies of 300 test images land
(JPEG q70 re-encode, 2x bicubic resize, +15 brightness, 1-px crop and zoom), and the closest
distinct train/test pair by thumbnail difference. Run from the repository root::

    .venv/bin/python benchmarks/near_duplicates.py

Writes ``benchmarks/results/near_duplicates.{md,json}``; ends with ``name: value`` lines.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_results import machine, markdown_table, write_results  # noqa: E402

from scarce.config import DataConfig  # noqa: E402
from scarce.data.duplicates import HAMMING, NEAR_MAE, dhash, thumbnail  # noqa: E402
from scarce.data.loader import resolve_splits  # noqa: E402

RESULTS = HERE / "results"
VARIANTS = ("jpeg_q70", "resize_2x", "brightness_+15", "crop_1px_zoom")


def variants(img: Image.Image) -> list[Image.Image]:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=70)
    w, h = img.size
    return [
        Image.open(io.BytesIO(buf.getvalue())).convert("L"),
        img.resize((2 * w, 2 * h), Image.Resampling.BICUBIC),
        Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + 15, 0, 255).astype(np.uint8)),
        img.crop((1, 1, w - 1, h - 1)).resize((w, h)),
    ]


def measure() -> dict:
    """dHash and thumbnail distances of the demo train/test pairs and of near copies of test images."""
    splits = resolve_splits(DataConfig(name="demo"))
    load = lambda s: [Image.open(Path(s.root) / r).convert("L") for r in s.ids]  # noqa: E731
    train, test = load(splits["train"]), load(splits["test"])
    ha = np.array([dhash(i) for i in train], dtype=np.uint64)
    hb = np.array([dhash(i) for i in test], dtype=np.uint64)
    bits = np.bitwise_count(ha[:, None] ^ hb[None, :])  # [500, 1000]
    ta, tb = np.stack([thumbnail(i) for i in train]), np.stack([thumbnail(i) for i in test])
    mae = np.abs(ta[:, None, :] - tb[None, :, :]).mean(axis=2)  # [500, 1000]
    v_bits, v_mae = [], []
    for img in test[:300]:
        h, t = dhash(img), thumbnail(img)
        v_bits.append([int(np.bitwise_count(np.uint64(h ^ dhash(v)))) for v in variants(img)])
        v_mae.append([float(np.abs(t - thumbnail(v)).mean()) for v in variants(img)])
    v_bits, v_mae = np.array(v_bits), np.array(v_mae)
    return {
        "pairs": int(bits.size),
        "dhash_alone_pairs": {str(r): int((bits <= r).sum()) for r in (0, 4, 8, HAMMING)},
        "flagged_by_check": int(((bits <= HAMMING) & (mae <= NEAR_MAE)).sum()),
        "closest_distinct_mae": round(float(mae.min()), 2),
        "variants_max_bits": dict(zip(VARIANTS, v_bits.max(0).tolist())),
        "variants_max_mae": {k: round(float(v), 2) for k, v in zip(VARIANTS, v_mae.max(0))},
        "variants_caught": {
            k: round(float(((b <= HAMMING) & (m <= NEAR_MAE)).mean()), 3)
            for k, b, m in zip(VARIANTS, v_bits.T, v_mae.T)
        },
    }


def report(result: dict) -> str:
    """The Markdown: what dHash alone and the data check flag, then how far each kind of copy lands."""
    flagged = f"pairs flagged by data check (dHash <= {HAMMING} and MAE <= {NEAR_MAE:g})"
    pairs = markdown_table(
        ["measure", "value"],
        [
            *[
                [f"train/test pairs with dHash <= {r} bits (dHash alone)", n]
                for r, n in result["dhash_alone_pairs"].items()
            ],
            [flagged, result["flagged_by_check"]],
            ["closest distinct pair, thumbnail MAE (grey levels)", result["closest_distinct_mae"]],
        ],
    )
    copies = markdown_table(
        ["copy of a test image", "max dHash bits", "max MAE", "caught by data check"],
        [
            [k, result["variants_max_bits"][k], result["variants_max_mae"][k], f"{result['variants_caught'][k]:.0%}"]
            for k in VARIANTS
        ],
    )
    return f"# near duplicates on the demo data\n\n{pairs}\n\n{copies}\n"


def main() -> None:
    result = {**measure(), "machine": machine()}
    write_results(
        RESULTS,
        "near_duplicates",
        result,
        report(result),
        {
            "dhash4_false_pairs": result["dhash_alone_pairs"]["4"],
            "check_false_pairs": result["flagged_by_check"],
            "closest_distinct_mae": result["closest_distinct_mae"],
            "jpeg_q70_caught": result["variants_caught"]["jpeg_q70"],
        },
    )


if __name__ == "__main__":
    main()
