"""Small-input stems: early downsampling removed for the supported timm families."""

import pytest
import timm
import torch
from safetensors.torch import load_file

from scarce.config import load_config
from scarce.engine.evaluation import load_run
from scarce.engine.trainer import train
from scarce.errors import UserError
from scarce.models import adapt_to_small_input
from scarce.models.small_input import AUTO_MAX_SIZE, wants_small_input
from tests.conftest import TINY


@pytest.mark.parametrize(
    "name, plain, small",
    [
        ("resnet18", 1, 4),
        ("resnet18d", 1, 4),
        ("seresnext26d_32x4d", 1, 4),
        ("efficientnet_b0", 1, 2),
        ("mobilenetv3_small_050", 1, 2),
        ("convnext_atto", 1, 4),
        ("convnext_atto_ols", 1, 4),  # overlap stem: two 3x3 stride-2 convs (only the first was adapted: 2)
    ],
)
def test_stem_keeps_resolution(name, plain, small, one_thread):
    model = timm.create_model(name, num_classes=10, in_chans=1).eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert model.forward_features(x).shape[-1] == plain
        assert adapt_to_small_input(model) is model
        assert model.forward_features(x).shape[-1] == small
        assert model(x).shape == (1, 10)


def test_resnet_stem_is_a_3x3_stride_1_conv_without_max_pool():
    model = adapt_to_small_input(timm.create_model("resnet18", num_classes=10, in_chans=3))
    assert (model.conv1.kernel_size, model.conv1.stride, model.conv1.in_channels) == ((3, 3), (1, 1), 3)
    assert isinstance(model.maxpool, torch.nn.Identity)


def test_new_stem_convs_are_initialised_as_timm_initialises_the_family():
    torch.manual_seed(0)
    resnet = adapt_to_small_input(timm.create_model("resnet18", num_classes=10, in_chans=1))
    expected = (2 / (64 * 3 * 3)) ** 0.5  # kaiming normal, fan_out, relu: timm's ResNet convs
    assert abs(resnet.conv1.weight.std().item() / expected - 1) < 0.1
    convnext = adapt_to_small_input(timm.create_model("convnext_atto", num_classes=10, in_chans=1))
    assert abs(convnext.stem[0].weight.std().item() / 0.02 - 1) < 0.15 and not convnext.stem[0].bias.any()


def test_unsupported_family_names_the_supported_ones():
    with pytest.raises(
        UserError, match="supported families: ResNet/ResNeXt/SE-ResNet, EfficientNet/MobileNet, ConvNeXt"
    ):
        adapt_to_small_input(timm.create_model("regnety_002", num_classes=10))


def test_auto_turns_on_at_small_sizes_only():
    assert wants_small_input("auto", 28) and wants_small_input("auto", AUTO_MAX_SIZE)
    assert not wants_small_input("auto", AUTO_MAX_SIZE + 1) and not wants_small_input("auto", 32)  # lost at 32 px
    assert wants_small_input(True, 224) and not wants_small_input(False, 16)


def test_config_rejects_other_values():
    with pytest.raises(UserError, match="model.small_input"):
        load_config(None, ["model.small_input=maybe"])


def test_saved_weights_rebuild_with_timm_plus_adapt(tmp_path, one_thread):
    cfg = load_config(None, TINY + ["epochs=1", "model.small_input=true"])
    train(cfg, tmp_path / "run", progress=False)
    model = timm.create_model("test_resnet", num_classes=10, in_chans=1)
    adapt_to_small_input(model)
    model.load_state_dict(load_file(str(tmp_path / "run" / "best.safetensors")))
    model.eval()
    loaded = load_run(tmp_path / "run", "cpu")
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))
    assert isinstance(loaded.model.maxpool, torch.nn.Identity)
