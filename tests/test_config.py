import re

import pytest

from scarce.config import (
    Config,
    available_recipes,
    build,
    describe,
    load_config,
    parse_overrides,
    save_config,
    saved_config,
)
from scarce.errors import UserError


def test_defaults_and_overrides_nest():
    cfg = load_config(None, ["optim.lr=0.01", "epochs=3", "model.name=resnet34", "augment.randaugment=rand-m9-mstd0.5"])
    assert cfg.optim.lr == 0.01 and cfg.epochs == 3 and cfg.model.name == "resnet34"
    assert cfg.augment.randaugment == "rand-m9-mstd0.5"
    assert cfg.batch_size == Config().batch_size


def test_override_values_are_yaml():
    tree = parse_overrides(["a.b=0.5", "c=[0.5, 1.0]", "d=null", "e=true", "f=rand-m9"])
    assert tree == {"a": {"b": 0.5}, "c": [0.5, 1.0], "d": None, "e": True, "f": "rand-m9"}


def test_exponent_floats_without_dot_are_floats():
    cfg = load_config(None, ["optim.lr=1e-3", "augment.scale=[1e-1, 1]"])
    assert cfg.optim.lr == 1e-3 and cfg.augment.scale == [0.1, 1.0]


def test_a_float_that_is_not_finite_is_refused_also_without_a_range():
    with pytest.raises(UserError, match=r"^config key 'sched.decay_milestones': expected a finite number, got nan$"):
        load_config(None, ["sched.decay_milestones=[30, .nan]"])
    with pytest.raises(UserError, match=r"^config key 'sched.decay_milestones': expected a finite number, got inf$"):
        load_config(None, ["sched.decay_milestones=[.inf]"])


def test_int_is_accepted_as_float_but_not_the_reverse():
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0
    with pytest.raises(UserError, match=r"config key 'epochs': expected int or one of auto, got 2.5"):
        load_config(None, ["epochs=2.5"])


def test_unknown_key_lists_valid_ones():
    with pytest.raises(
        UserError,
        match=r"unknown config key 'optim.lrr' \(did you mean 'optim.lr'\?\); valid keys here: optim.name, optim.lr",
    ):
        load_config(None, ["optim.lrr=0.1"])


def test_unknown_top_level_key():
    with pytest.raises(UserError, match="unknown config key 'epoch' \\(did you mean 'epochs'\\?\\); valid keys"):
        load_config(None, ["epoch=1"])


def test_unknown_key_hints_at_the_key_meant(tmp_path):
    """A key one level too high names where it lives; a dotted key in a recipe file says to nest it;
    a file named without its .yaml is pointed at."""
    with pytest.raises(
        UserError, match=r"^unknown config key 'augment.mixup_alpha' \(did you mean 'augment.mix.mixup_alpha'\?\)"
    ):
        load_config(None, ["augment.mixup_alpha=0.8"])
    path = tmp_path / "mine.yaml"
    path.write_text("optim.lr: 0.01\n")
    with pytest.raises(
        UserError,
        match=r"mine\.yaml: unknown config key 'optim.lr' \(in a recipe file, nest it: 'optim:' then '  lr: \.\.\.'",
    ):
        load_config(str(path))
    with pytest.raises(UserError, match=r"^unknown config key 'zzz'; valid keys here"):  # nothing close: no guess
        load_config(None, ["zzz=1"])
    with pytest.raises(
        UserError,
        match=re.escape(
            f"recipe '{tmp_path / 'mine'}': no such file or built-in recipe (did you mean {tmp_path / 'mine.yaml'}?)"
        ),
    ):
        load_config(str(tmp_path / "mine"))


def test_choices_are_enforced():
    with pytest.raises(UserError, match=r"config key 'amp': expected one of auto, none, bf16, fp16, got 'fp8'"):
        load_config(None, ["amp=fp8"])


def test_bool_is_not_an_int():
    with pytest.raises(UserError, match="expected int"):
        build(Config, {"epochs": True})


def test_overrides_and_recipes_read_yaml_1_2_scalars(tmp_path):
    # PyYAML's YAML 1.1 read `no` as False, 010 as octal 8 and 1:30 as base-60 90
    cfg = load_config(None, ["data.name=no", "seed=010", "optim.lr=1e-3", "ema.enabled=yes", "model.precise_bn=off"])
    assert (cfg.data.name, cfg.seed, cfg.optim.lr, cfg.ema.enabled, cfg.model.precise_bn) == (
        "no",
        10,
        0.001,
        True,
        False,
    )
    with pytest.raises(UserError, match=r"config key 'optim.lr': expected float, got '1:30' \(str\)$"):
        load_config(None, ["optim.lr=1:30"])
    with pytest.raises(UserError, match=r"config key 'loss.name': expected one of ce, .*, got 'off'$"):
        load_config(None, ["loss.name=off"])
    # a recipe written for YAML 1.1 keeps its yes/no booleans
    recipe = tmp_path / "old.yaml"
    recipe.write_text("seed: 010\nema:\n  enabled: yes\n  warmup: off\ndata:\n  name: 'no'\n")
    cfg = load_config(str(recipe))
    assert (cfg.seed, cfg.ema.enabled, cfg.ema.warmup, cfg.data.name) == (10, True, False, "no")


def test_a_saved_config_reads_back_as_written(tmp_path):
    # PyYAML's 1.1 dumper writes the string 1e3 unquoted (no dot: not a 1.1 float); 1.2 reads 1000.0
    cfg = load_config(None, ["data.name='1e3'", "data.train='0x1F'", "model.name='True'", "optim.lr=1e-5"])
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    assert "name: '1e3'" in path.read_text(encoding="utf-8")
    assert saved_config(path) == cfg


def test_a_number_or_boolean_for_a_text_option_says_to_quote_it():
    with pytest.raises(
        UserError, match=re.escape("'data.train': expected str, got 2024 (int): quote it to mean the text ('2024')")
    ):
        load_config(None, ["data.train=2024"])


def test_wrong_type_in_section():
    with pytest.raises(UserError, match=r"config key 'data': expected a mapping"):
        build(Config, {"data": 3})


def test_bad_override_syntax():
    with pytest.raises(UserError, match="expected dotted key=value"):
        parse_overrides(["optim.lr"])


def test_builtin_recipes_load():
    names = available_recipes()
    assert {"demo", "fashion-mnist-50", "vipriors-effnet-b3"} <= set(names)
    for name in names:
        load_config(name)


def test_paper_recipe_values():
    cfg = load_config("vipriors-effnet-b3")
    assert (cfg.model.name, cfg.data.img_size) == ("efficientnet_b3", 300)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.eps, cfg.optim.weight_decay) == ("rmsproptf", 0.016, 1e-3, 1e-5)
    assert (cfg.sched.name, cfg.sched.decay_rate, cfg.sched.decay_epochs, cfg.sched.warmup_epochs) == (
        "step",
        0.97,
        2.4,
        3,
    )
    assert (cfg.epochs, cfg.model.drop_rate, cfg.model.drop_path_rate) == (450, 0.3, 0.2)
    assert (cfg.ema.enabled, cfg.ema.decay, cfg.augment.randaugment, cfg.augment.re_prob) == (
        True,
        0.9999,
        "rand-m9-mstd0.5",
        0.2,
    )


def test_unknown_recipe_lists_builtins():
    with pytest.raises(UserError, match="built-in recipes: .*demo"):
        load_config("no-such-recipe")


def test_recipe_file_must_be_a_mapping(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="expected a mapping"):
        load_config(str(path))


def test_a_bad_key_or_value_in_a_recipe_file_names_the_file(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(UserError, match=r"^recipe .*typo\.yaml: unknown config key 'optim\.lrr'"):
        load_config(str(path))
    path.write_text("epochs: many\n")
    with pytest.raises(UserError, match=r"^recipe .*typo\.yaml: config key 'epochs'"):
        load_config(str(path))
    with pytest.raises(UserError, match=r"^unknown config key 'optim\.lrr'"):  # an override is not the recipe's
        load_config("demo", ["optim.lrr=1"])


def test_yaml_is_read_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("epochs: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(str(path))


def test_an_unknown_recipe_names_the_closest_built_in_one():
    with pytest.raises(UserError, match=r"recipe 'smal': no such file or built-in recipe \(did you mean small\?\)"):
        load_config("smal")


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    """PyYAML keeps the last of two equal keys: a second augment: block would silently drop the first."""
    path = tmp_path / "dup.yaml"
    path.write_text(
        "epochs: 1\naugment:\n  randaugment: rand-m9-mstd0.5\nmodel:\n  drop_rate: 0.3\naugment:\n  hflip: 0.0\n"
    )
    with pytest.raises(UserError, match=r"dup.yaml line 6, column 1: .*key 'augment' appears twice \(lines 2 and 6\)"):
        load_config(str(path))
    path.write_text("augment:\n  hflip: 0.5\n  hflip: 0.0\n")  # inside a section too
    with pytest.raises(UserError, match=r"key 'hflip' appears twice \(lines 2 and 3\)"):
        load_config(str(path))


def test_an_unhashable_key_is_invalid_yaml_not_a_traceback(tmp_path):
    path = tmp_path / "list_key.yaml"
    path.write_text("? [a, b]\n: 1\n")
    with pytest.raises(UserError, match=r"list_key.yaml line 1, column 3: not valid YAML \(found unhashable key\)"):
        load_config(str(path))


def test_yaml_syntax_errors_name_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: 1\nmodel:\n  name: resnet18\n   drop_rate: 0.1\n")
    with pytest.raises(UserError, match=r"bad.yaml line 4, column 13: not valid YAML \(mapping values are not allowed"):
        load_config(str(path))


def test_describe_lists_every_leaf_with_help():
    rows = {k: (d, h) for k, d, h in describe()}
    assert rows["optim.lr"][0] == "0.001"
    assert "lsb_swap" in " ".join(rows)
    assert all(h for _, h in rows.values())
    # named choices, with "<number>" where the key also takes one
    assert rows["augment.fill"][1].endswith("[edge|mean|<number>]")
    assert rows["epochs"][1].endswith("[auto|<number>]") and rows["loss.name"][1].endswith("]")
    assert "<number>" not in rows["loss.name"][1]


def test_decay_norm_and_bias_puts_every_parameter_under_weight_decay():
    import timm

    from scarce.engine.factories import build_optimizer

    model = timm.create_model("test_resnet", num_classes=3)
    exempt = build_optimizer(load_config(None, ["optim.weight_decay=0.1"]), model)  # the default: false
    assert sorted({g["weight_decay"] for g in exempt.param_groups}) == [0.0, 0.1]
    every = build_optimizer(load_config(None, ["optim.weight_decay=0.1", "optim.decay_norm_and_bias=true"]), model)
    assert {g["weight_decay"] for g in every.param_groups} == {0.1}
    assert sum(len(g["params"]) for g in every.param_groups) == len(list(model.parameters()))


def test_config_choices_are_the_registries():
    """loss.name and sched.name list their values in the config (Literal); the registries agree."""
    import typing

    from scarce.config import LossConfig, SchedConfig
    from scarce.engine.factories import SCHEDULERS
    from scarce.losses import LOSS_NAMES

    assert typing.get_args(typing.get_type_hints(LossConfig)["name"]) == LOSS_NAMES
    assert typing.get_args(typing.get_type_hints(SchedConfig)["name"]) == SCHEDULERS
    with pytest.raises(UserError, match="expected one of ce, label_smoothing"):
        load_config("demo", ["loss.name=focal_cos"])
