"""Small-input stems: keep the resolution of 28-64 px images instead of throwing it away.

ImageNet stems downsample by 4 before the first stage (ResNet: 7x7 stride-2 conv and a
stride-2 max-pool), so a 32 px image reaches the first stage at 8x8 and the last at 1x1.
:func:`adapt_to_small_input` removes that early downsampling in place, as CIFAR variants of
these networks do. The weights of an adapted model load into ``timm.create_model(...)``
passed through the same function::

    model = timm.create_model(name, num_classes=C, in_chans=K)
    scarce.models.adapt_to_small_input(model)
    model.load_state_dict(safetensors.torch.load_file("best.safetensors"))
"""

from __future__ import annotations

import torch.nn as nn

from scarce.errors import UserError

# Below or at this side length, ``model.small_input=auto`` adapts the stem. At 32 px it lost
# (BENCHMARKS.md session 14, Fashion-MNIST best config, 3 seeds: -3.0 +- 1.2 points for 4.8x the
# time per epoch; upsampling to 64 px won instead), so auto keeps timm's stem from 32 px up and
# adapts it only below, where the unchanged stem would leave sub-pixel feature maps (unmeasured).
AUTO_MAX_SIZE = 31


def _resnet(model: nn.Module) -> None:
    conv = model.conv1
    if isinstance(conv, nn.Sequential):  # deep stem (resnet18d, ...): three 3x3 convs, the first strided
        conv[0].stride = (1, 1)
    else:
        model.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=False)
        # as timm's ResNet initialises its convs (PyTorch's default is ~3x wider for a 1-channel input)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if not isinstance(model.maxpool, (nn.MaxPool2d, nn.Identity)):
        raise UserError("model.small_input: this ResNet's stem pool is not a max-pool; set model.small_input=false")
    model.maxpool = nn.Identity()


def _strided_stem_conv(model: nn.Module) -> None:
    # EfficientNet, MobileNetV2/V3, MixNet, ...: one stride-2 3x3 conv; same-padding variants
    # (tf_*) compute their padding from the stride, so changing it is enough.
    model.conv_stem.stride = (1, 1)


def _convnext(model: nn.Module) -> None:
    from timm.layers import trunc_normal_

    first = model.stem[0]
    if first.kernel_size != first.stride:  # overlap stems (*_ols): 3x3 stride-2 convs, padded to keep the size
        for conv in model.stem:
            if isinstance(conv, nn.Conv2d):
                conv.stride = (1, 1)
        return
    # the 4x4 stride-4 "patchify" conv
    model.stem[0] = nn.Conv2d(first.in_channels, first.out_channels, 3, stride=1, padding=1)
    trunc_normal_(model.stem[0].weight, std=0.02)  # as timm's ConvNeXt initialises its convs
    nn.init.zeros_(model.stem[0].bias)


def _families() -> dict[str, tuple[type, ...]]:
    from timm.models.convnext import ConvNeXt
    from timm.models.efficientnet import EfficientNet
    from timm.models.mobilenetv3 import MobileNetV3
    from timm.models.resnet import ResNet

    return {
        "ResNet/ResNeXt/SE-ResNet": (ResNet,),
        "EfficientNet/MobileNet": (EfficientNet, MobileNetV3),
        "ConvNeXt": (ConvNeXt,),
    }


_ADAPTERS = {"ResNet/ResNeXt/SE-ResNet": _resnet, "EfficientNet/MobileNet": _strided_stem_conv, "ConvNeXt": _convnext}


def adapt_to_small_input(model: nn.Module) -> nn.Module:
    """Remove the early downsampling of a timm model's stem, in place; returns the model.

    Supported: ResNet/ResNeXt/SE-ResNet (3x3 stride-1 first conv, no max-pool),
    EfficientNet/MobileNet (stride-1 stem conv), ConvNeXt (3x3 stride-1 stem instead of
    the 4x4 patchify conv; stride 1 in the overlap stems of ``*_ols``). Other families raise :class:`UserError` naming these.
    """
    for family, types in _families().items():
        if isinstance(model, types):
            _ADAPTERS[family](model)
            return model
    raise UserError(
        f"model.small_input: not supported for {type(model).__name__}; supported families: "
        f"{', '.join(_families())} (or set model.small_input=false)"
    )


def supports_small_input(model: nn.Module) -> bool:
    return any(isinstance(model, types) for types in _families().values())


def wants_small_input(setting: bool | str, img_size: int, model: nn.Module | None = None) -> bool:
    """``model.small_input`` (true, false or 'auto') at ``img_size`` -> adapt the stem or not;
    ``auto`` leaves families it does not support (``model``) as timm builds them."""
    if setting == "auto":
        return img_size <= AUTO_MAX_SIZE and (model is None or supports_small_input(model))
    return bool(setting)
