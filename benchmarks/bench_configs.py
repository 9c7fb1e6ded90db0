"""Named configs of the small-data benchmark: each is a list of dotted overrides on the recipe.

The recipe (``fashion-mnist-50``) carries the tuned cross-entropy baseline; every config adds
only what it names, so differences between rows are the technique, at the same budget.
"""

from __future__ import annotations

RA = ["augment.randaugment=rand-m9-mstd0.5"]
# The run has only ~16 steps/epoch x tens of epochs: decay 0.99 averages the last ~100 steps
# (the paper's 0.9999 assumes hundreds of thousands of steps).
EMA = ["ema.enabled=true", "ema.decay=0.99"]


def lsb(bits: int = 2, placement: str = "last") -> list[str]:
    stage = "sample" if placement == "before_randaugment" else "batch"  # the batch stage runs last
    return [
        "augment.lsb_swap.enabled=true",
        f"augment.lsb_swap.bits={bits}",
        "augment.lsb_swap.p=0.5",
        f"augment.lsb_swap.placement={placement}",
        f"augment.lsb_swap.stage={stage}",
    ]


def loss(name: str) -> list[str]:
    return [f"loss.name={name}"]


# The paper's parts together: RandAugment, LSB Swap, Focal Cosine Loss (with head g), EMA,
# dropout 0.3, drop path 0.2, random erasing 0.2.
FULL = (
    RA
    + EMA
    + lsb(2)
    + loss("focal_cosine")
    + ["model.drop_rate=0.3", "model.drop_path_rate=0.2", "augment.re_prob=0.2"]
)

CONFIGS: dict[str, list[str]] = {
    "ce": [],
    "ce_ra": RA,
    "ce_ra_ema": RA + EMA,
    "ce_ra_lsb_last_b1": RA + lsb(1),
    "ce_ra_lsb_last_b2": RA + lsb(2),
    "ce_ra_lsb_last_b3": RA + lsb(3),
    "ce_ra_lsb_before_ra_b2": RA + lsb(2, "before_randaugment"),
    "label_smoothing": loss("label_smoothing"),
    "cosine": loss("cosine"),
    "cosine_ce": loss("cosine_ce"),
    "focal_cosine": loss("focal_cosine"),
    "focal_cosine_authors": loss("focal_cosine_authors"),
    "full": FULL,
}
# CE baseline tuning on the val split (seed 0): lr x weight decay, AdamW.
for _lr in ("1e-3", "3e-3", "1e-2"):
    for _wd in ("5e-3", "5e-2"):
        CONFIGS[f"tune_lr{_lr}_wd{_wd}"] = [f"optim.lr={_lr}", f"optim.weight_decay={_wd}"]

# Small inputs (28 px Fashion-MNIST at 32 px): the stem as timm builds it, the stem without its
# early downsampling, and the unchanged stem on images upsampled to 64 px.
CONFIGS["si_unchanged"] = ["model.small_input=false"]
CONFIGS["si_stem"] = ["model.small_input=true"]
CONFIGS["si_up64"] = ["model.small_input=false", "data.img_size=64"]

# The train crop at 100 epochs (seed 0, judged on val): RandomResizedCrop (the recipe) vs
# CIFAR-style padded shifts of the whole image (the bare loop's augmentation).
CONFIGS["ce_pad2"] = ["augment.crop=pad", "augment.pad=2"]
CONFIGS["ce_pad4"] = ["augment.crop=pad", "augment.pad=4"]

# CE tuning at 100 epochs on val (seed 0), on the pad2 crop: optimizer, lr, weight decay (and on
# which parameters), batch size.
PAD2 = CONFIGS["ce_pad2"]
CONFIGS["tune_pad2_lr0.1"] = PAD2 + ["optim.lr=0.1"]
CONFIGS["tune_pad2_lr0.025"] = PAD2 + ["optim.lr=0.025"]
CONFIGS["tune_pad2_wd5e-3"] = PAD2 + ["optim.weight_decay=5e-3"]
CONFIGS["tune_pad2_wdall"] = PAD2 + ["optim.decay_norm_and_bias=true"]
CONFIGS["tune_pad2_b32"] = PAD2 + ["batch_size=32"]
CONFIGS["tune_pad2_adamw"] = PAD2 + ["optim.name=adamw", "optim.lr=2e-3", "optim.weight_decay=0.05"]

# The tuned CE baseline (best val of the tune100 table: weight decay on every parameter) and the
# paper's first parts on top of it, at 100 epochs.
TUNED = PAD2 + ["optim.decay_norm_and_bias=true"]
CONFIGS["tuned"] = TUNED
CONFIGS["tuned_lr0.1"] = TUNED + ["optim.lr=0.1"]
CONFIGS["tuned_ra9"] = TUNED + RA
CONFIGS["tuned_ra5"] = TUNED + ["augment.randaugment=rand-m5-mstd0.5"]
# 28 px images in a zero 32 px frame instead of resized up (the bare loop's input)
CONFIGS["tuned_fitpad"] = TUNED + ["data.small_images=pad"]
# every image in every epoch (the last, smaller batch kept), as the bare loop trains
CONFIGS["tuned_keeplast"] = TUNED + ["data.keep_last_batch=true"]
# warmup from lr / 25, as the bare loop's one-cycle starts (timm's warmup is linear, not cosine)
CONFIGS["tuned_warm25"] = TUNED + ["sched.warmup_lr=0.002"]
# ~800 steps: decay 0.995 averages the last ~200
CONFIGS["tuned_ema"] = TUNED + ["ema.enabled=true", "ema.decay=0.995"]

# The paper's parts on the tuned baseline (session 12), at 100 epochs. EMA decay for ~800 steps.
TUNED_EMA = ["ema.enabled=true", "ema.decay=0.995"]
TUNED_RA = TUNED + RA
CONFIGS["tuned_ra9_lsb_last"] = TUNED_RA + lsb(2)
CONFIGS["tuned_ra9_lsb_before"] = TUNED_RA + lsb(2, "before_randaugment")
for _loss in ("label_smoothing", "cosine", "cosine_ce", "focal_cosine", "focal_cosine_authors"):
    CONFIGS[f"tuned_{_loss}"] = TUNED + loss(_loss)
# The full recipe on the tuned baseline, and the full recipe minus each part (leave-one-out).
FULL_PARTS: dict[str, list[str]] = {
    "ra": RA,
    "ema": TUNED_EMA,
    "lsb": lsb(2),
    "fcl": loss("focal_cosine"),
    "drop": ["model.drop_rate=0.3", "model.drop_path_rate=0.2"],
    "re": ["augment.re_prob=0.2"],
}
CONFIGS["tuned_full"] = TUNED + [o for part in FULL_PARTS.values() for o in part]
for _left in FULL_PARTS:
    CONFIGS[f"tuned_full_no_{_left}"] = TUNED + [o for name, part in FULL_PARTS.items() if name != _left for o in part]

# augment.fill (session 12): RandAugment painted uncovered pixels with the ImageNet grey (115) before
# the key existed; the cells of these configs were trained so (cell.json records each commit).
# From then on the base recipe pins fill=edge (black here, as pad crops always painted).
RA_MEAN_FILL_CONFIGS = [
    "tuned_ra9",
    "tuned_ra5",
    "tuned_ra9_lsb_last",
    "tuned_ra9_lsb_before",
    "tuned_full",
    *[f"tuned_full_no_{p}" for p in FULL_PARTS if p != "ra"],
]
CONFIGS["tuned_ra9_edge"] = TUNED_RA + ["augment.fill=edge"]
CONFIGS["tuned_ra9_mean"] = TUNED_RA + ["augment.fill=mean"]  # pads painted grey too
# inputs normalised with Fashion-MNIST's own mean and std (0.286 / 0.353), as the bare loop does
CONFIGS["tuned_norm"] = TUNED + ["data.normalize=train"]

# Mixup / CutMix (session 14: the loss mixed, one weight per batch) on the best config; the matrix
# "mix" reruns the best config beside them at the same commit (work dir of its own).
BEST = TUNED_RA + lsb(2, "before_randaugment")
CONFIGS["tuned_ra9_lsb_before_cutmix"] = BEST + ["augment.mix.cutmix_alpha=1.0"]
CONFIGS["tuned_ra9_lsb_before_mixup"] = BEST + ["augment.mix.mixup_alpha=0.8"]
CONFIGS["tuned_ra9_lsb_before_mix"] = BEST + ["augment.mix.mixup_alpha=0.8", "augment.mix.cutmix_alpha=1.0"]
CONFIGS["tuned_ra9_mixup"] = TUNED_RA + ["augment.mix.mixup_alpha=0.8"]  # mixup without LSB Swap (session 16)
# Other networks on the shipped recipe (session 17), candidates for a mixed ensemble whose members
# differ more than training seeds and close recipes do (the 85.5 % goal)
SHIPPED = CONFIGS["tuned_ra9_mixup"]
for _arch in ("resnet34", "resnet26d", "efficientnet_b0"):
    CONFIGS[f"tuned_ra9_mixup_{_arch}"] = SHIPPED + [f"model.name={_arch}"]
# Toward the 84.0 single-model goal (session 18): RandAugment m5 lost to m9 by 0.67 on every seed,
# so stronger (m10: timm's maximum at its default mmax 10) and more ops (n3) on the shipped recipe;
# and the shipped recipe at twice the epochs (is 300 converged under mixup?). The queue's --set
# keeps warmup at 45 epochs (7.5 % here).
CONFIGS["tuned_ra10_mixup"] = TUNED + ["augment.randaugment=rand-m10-mstd0.5", "augment.mix.mixup_alpha=0.8"]
CONFIGS["tuned_ra9n3_mixup"] = TUNED + ["augment.randaugment=rand-m9-n3-mstd0.5", "augment.mix.mixup_alpha=0.8"]
CONFIGS["tuned_ra9_mixup_e600"] = SHIPPED + ["epochs=600"]
# Session 19: lr and weight decay were tuned for CE at 100 epochs on 32 px; the shipped recipe
# trains 3x longer on 64 px under RandAugment + mixup, so both are screened again there (seed 0,
# judged on val and the 5000 held-out images before any test seed is added).
CONFIGS["tuned_ra9_mixup_wd1e3"] = SHIPPED + ["optim.weight_decay=1e-3"]
CONFIGS["tuned_ra9_mixup_wd2e3"] = SHIPPED + ["optim.weight_decay=2e-3"]
CONFIGS["tuned_ra9_mixup_wd5e3"] = SHIPPED + ["optim.weight_decay=5e-3"]  # wd 2e-3 won seed 0 by 0.8: further
# the CE baseline at the same weight decay: a gain of the recipe must not be a weight-decay gain
# that CE would get too
CONFIGS["tuned_wd2e3"] = TUNED + ["optim.weight_decay=2e-3"]
# The recipe shipped from session 19 (weight decay 2e-3): the next screens build on it
SHIPPED19 = CONFIGS["tuned_ra9_mixup_wd2e3"]
CONFIGS["tuned_ra9_mixup_wd2e3_e600"] = SHIPPED19 + ["epochs=600"]
CONFIGS["tuned_ra9_mixup_wd2e3_lr0.1"] = SHIPPED19 + ["optim.lr=0.1"]
CONFIGS["tuned_ra9_mixup_wd2e3_bs32"] = SHIPPED19 + ["batch_size=32"]
# every image every epoch: at k = 10 the dropped last batch is 36 of 100 images (session 28 screen)
CONFIGS["tuned_ra9_mixup_wd2e3_keeplast"] = SHIPPED19 + ["data.keep_last_batch=true"]
# Session 20: members of the same recipe and images agree too much (seed 0: 3 members' soft vote
# 85.56 vs the base's 85.14, adding three close recipes gave nothing more); other networks on the
# shipped recipe are the next candidates for the 85.5 % ensemble (resnet26d: 83.44 on the old one)
for _arch in ("resnet26d", "resnet34"):
    CONFIGS[f"tuned_ra9_mixup_wd2e3_{_arch}"] = SHIPPED19 + [f"model.name={_arch}"]
CONFIGS["tuned_ra9_mixup_lr0.1"] = SHIPPED + ["optim.lr=0.1"]
# small batches did well in Brigato et al.'s tuned baselines (~16 at 50/class): twice the steps
CONFIGS["tuned_ra9_mixup_bs32"] = SHIPPED + ["batch_size=32"]

MATRICES: dict[str, list[str]] = {
    "tune": [c for c in CONFIGS if c.startswith("tune_lr")],
    "main": ["ce", "ce_ra", "ce_ra_ema", "ce_ra_lsb_last_b2", "focal_cosine", "full"],
    "lsb": ["ce_ra", "ce_ra_lsb_last_b1", "ce_ra_lsb_last_b2", "ce_ra_lsb_last_b3", "ce_ra_lsb_before_ra_b2"],
    "losses": ["ce", "label_smoothing", "cosine", "cosine_ce", "focal_cosine", "focal_cosine_authors"],
    "ensemble": ["full"],
    "smoke": ["ce", "ce_ra"],
    "small_input": ["si_unchanged", "si_stem", "si_up64"],
    "crop": ["ce", "ce_pad2", "ce_pad4"],
    "tuned": [
        "tuned",
        "tuned_fitpad",
        "tuned_keeplast",
        "tuned_warm25",
        "tuned_lr0.1",
        "tuned_ra9",
        "tuned_ra5",
        "tuned_ema",
    ],
    "parts": [
        "tuned",
        "tuned_warm25",
        "tuned_norm",
        "tuned_ema",
        "tuned_ra9",
        "tuned_ra9_edge",
        "tuned_ra9_lsb_last",
        "tuned_ra9_lsb_before",
        "tuned_label_smoothing",
        "tuned_cosine",
        "tuned_cosine_ce",
        "tuned_focal_cosine",
        "tuned_focal_cosine_authors",
        "tuned_full",
        *[f"tuned_full_no_{p}" for p in FULL_PARTS],
    ],
    "mix": [
        "tuned_ra9_lsb_before",
        "tuned_ra9_lsb_before_cutmix",
        "tuned_ra9_lsb_before_mixup",
        "tuned_ra9_lsb_before_mix",
    ],
    "tune100": [
        "ce_pad2",
        "tune_pad2_wdall",
        "tune_pad2_wd5e-3",
        "tune_pad2_lr0.1",
        "tune_pad2_lr0.025",
        "tune_pad2_b32",
        "tune_pad2_adamw",
    ],
}
# Everything the three tables need, in one list (shared cells are trained once).
MATRICES["all"] = list(dict.fromkeys(MATRICES["main"] + MATRICES["lsb"] + MATRICES["losses"]))


MEMBER_SEED_STRIDE = 1000


def member_name(config: str, member: int) -> str:
    """The cell name of ensemble member ``member`` of ``config`` (member 0 is the plain cell)."""
    return f"{config}@m{member}" if member else config


def split_member(name: str) -> tuple[str, int]:
    """``"tuned@m2"`` -> ``("tuned", 2)``: ensemble member 2 of a config, trained on the same images as
    member 0 (the plain cell) from training seed ``seed + 1000 * 2``; a plain name is member 0."""
    config, _, member = name.partition("@m")
    if member and not member.isdigit():
        from scarce.errors import UserError

        raise UserError(f"benchmark config '{name}': expected CONFIG@mN with N a member number")
    return config, int(member or 0)


def config_overrides(name: str) -> list[str]:
    name = split_member(name)[0]
    if name not in CONFIGS:
        from scarce.errors import UserError

        raise UserError(f"benchmark config '{name}': unknown; valid: {', '.join(CONFIGS)}")
    return list(CONFIGS[name])
