"""Files scarce reads never run code: pickles are refused as weights and as state, YAML is
``safe_load``-ed, and paths read from manifests cannot leave the data root."""

from __future__ import annotations

import io
import pickle
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from scarce.cli import main
from scarce.config import load_config
from scarce.data.datasets import safe_join
from scarce.data.subset import read_manifest
from scarce.engine.trainer import train
from scarce.errors import UserError
from tests.conftest import TINY, make_image_folder

REPO = Path(__file__).resolve().parents[1]
SMALL = {"train": 6, "val": 2, "test": 2}


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appears if anything unpickles it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def hostile_files(marker: Path) -> dict[str, bytes]:
    """The payload as a plain pickle and as torch.save's zip archive."""
    buf = io.BytesIO()
    torch.save({"weight": Payload(marker)}, buf)
    return {"pickle": pickle.dumps({"weight": Payload(marker)}), "torch.save": buf.getvalue()}


def test_payload_is_live(tmp_path):
    """The payloads do run code when unpickled, so the refusals below mean something."""
    for kind, blob in hostile_files(tmp_path / "probe").items():
        (tmp_path / "probe").unlink(missing_ok=True)
        if kind == "torch.save":  # the archive's pickle (no tensors inside, so plain pickle reads it)
            with zipfile.ZipFile(io.BytesIO(blob)) as archive:
                blob = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
        pickle.loads(blob)
        assert (tmp_path / "probe").exists(), kind


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """(a finished 1-epoch run, a run stopped after epoch 0 of 2) on a tiny folder, EMA on."""
    base = tmp_path_factory.mktemp("sec")
    data = make_image_folder(base / "data", per_split=SMALL)
    cfg = load_config(None, TINY + ["ema.enabled=true"], {"data": {"name": str(data)}})
    train(load_config(None, TINY + ["epochs=1"], {"data": {"name": str(data)}}), base / "done", progress=False)
    train(cfg, base / "part", progress=False, stop_after=1)
    return base / "done", base / "part"


def _refused(capsys, marker: Path, *words: str) -> None:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), lines[0]
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
@pytest.mark.parametrize("target", ["run dir", "weights file"])
def test_pickle_as_weights_is_refused(kind, target, runs, tmp_path, capsys):
    run = shutil.copytree(runs[0], tmp_path / "run")
    marker = tmp_path / "pwned"
    (run / "best.safetensors").write_bytes(hostile_files(marker)[kind])
    path = run if target == "run dir" else run / "best.safetensors"
    assert main(["evaluate", str(path), "--workers", "0"]) == 2
    _refused(capsys, marker, "best.safetensors", "not a valid safetensors file")


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
@pytest.mark.parametrize("name", ["state.json", "model.safetensors", "optimizer.safetensors", "ema.safetensors"])
def test_pickle_as_state_is_refused_on_resume(kind, name, runs, tmp_path, capsys):
    run = shutil.copytree(runs[1], tmp_path / "run")
    marker = tmp_path / "pwned"
    target = run / name if name == "state.json" else run / "checkpoints" / "epoch-0000" / name
    assert target.is_file()
    target.write_bytes(hostile_files(marker)[kind])
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    _refused(capsys, marker, name, "not valid JSON" if name == "state.json" else "not a valid safetensors file")


def test_yaml_object_tags_are_refused(runs, tmp_path, capsys):
    marker = tmp_path / "pwned"
    tag = f"!!python/object/apply:builtins.open ['{marker}', 'w']\n"
    for command, source in (("train", runs[1]), ("evaluate", runs[0])):
        run = shutil.copytree(source, tmp_path / command)
        (run / "config.yaml").write_text(f"epochs: {tag}")
        argv = ["train", "--resume", str(run)] if command == "train" else ["evaluate", str(run)]
        assert main(argv) == 2
        _refused(capsys, marker, "config.yaml", "not valid YAML")


def _calls(pattern: str, folders: tuple[str, ...] = ("src/scarce", "benchmarks")) -> list[tuple[str, str]]:
    """(file:line, call text up to 3 lines) for every match in ``folders``' Python files."""
    hits = []
    for path in sorted(p for folder in folders for p in REPO.glob(f"{folder}/**/*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if re.search(pattern, line) and not line.lstrip().startswith("#"):
                hits.append((f"{path.relative_to(REPO)}:{i + 1}", " ".join(lines[i : i + 3])))
    return hits


def test_no_unsafe_deserialisation_in_the_code():
    """``git grep torch.load`` shows no use without weights_only=True; no pickle, no unsafe YAML."""
    loads = _calls(r"\btorch\.load\(", ("src/scarce", "benchmarks", "tests"))
    assert [h for h, text in loads if "weights_only=True" not in text] == []
    assert _calls(r"\b(c?[pP]ickle|dill|joblib)\.loads?\(") == []
    assert _calls(r"\byaml\.(load|unsafe_load|full_load)\(|Loader=yaml\.(Unsafe|Full)?Loader") == []
    assert _calls(r"allow_pickle\s*=\s*True") == []
    assert _calls(r"\bload_yaml\(")  # the scanner does find calls (YAML is read through load_yaml)
    from scarce import config_yaml  # recipes: safe_load's loader, YAML 1.2 scalars, no repeated keys

    assert issubclass(config_yaml.Yaml12Loader, yaml.SafeLoader)
    with pytest.raises(yaml.constructor.ConstructorError, match="could not determine a constructor"):
        config_yaml.load_yaml("!!python/object/apply:os.system ['true']")


@pytest.mark.parametrize("rel", ["../outside.png", "a/../../outside.png", "/etc/passwd", "..", "", "a/\0b.png"])
def test_safe_join_refuses_escapes(rel, tmp_path):
    with pytest.raises(UserError, match="escapes the data root"):
        safe_join(tmp_path, rel)


@pytest.mark.parametrize(
    "rel, expected", [("train/cat/1.png", "train/cat/1.png"), ("a/../b.png", "b.png"), ("./c d/é.png", "c d/é.png")]
)
def test_safe_join_keeps_paths_inside(rel, expected, tmp_path):
    assert safe_join(tmp_path, rel) == tmp_path / expected


def test_manifest_paths_cannot_escape_the_data_root(tmp_path, capsys):
    src = make_image_folder(tmp_path / "src", per_split={"train": 6, "test": 2})
    dst = tmp_path / "subset"
    assert main(["data", "subset", str(src), str(dst), "--per-class", "3", "--val-per-class", "2"]) == 0
    capsys.readouterr()
    rows = read_manifest(dst)
    assert len(rows) == 3 * 5 + 3 * 2 and all(Path(r["path"]).is_file() for r in rows)
    assert all(Path(r["path"]).resolve().is_relative_to(dst.resolve()) for r in rows)
    assert main(["data", "check", str(dst)]) == 0
    capsys.readouterr()
    manifest = dst / "manifest.csv"
    manifest.write_text(manifest.read_text() + "train,cat,/x.png,../../../etc/passwd\n")
    with pytest.raises(UserError, match=r"manifest.csv: path '../../../etc/passwd' escapes the data root"):
        read_manifest(dst)
    assert main(["data", "check", str(dst)]) == 1
    out = capsys.readouterr().out
    assert "escapes the data root" in out and "problems: 1" in out
