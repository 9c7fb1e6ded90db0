"""Every import in the package points down a layer (or stays in its own package)."""

import ast
from pathlib import Path

import scarce

PACKAGE = Path(scarce.__file__).parent
# Bottom to top; a module may import its own layer or any layer below it.
LAYERS = [
    {"errors", "io", "calibration"},
    {"config", "config_augment", "config_data", "config_parse", "config_yaml"},
    {"augment", "data", "losses", "models"},
    {"engine"},
    {"inference"},
    {"report"},
    {"api", "cli", "cli_ensemble", "cli_runs", "cli_tools", "workflows", "__main__", "__init__"},
]


def _layer(top: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if top in names)


def _imports(path: Path) -> list[str]:
    """Every ``scarce.*`` module imported anywhere in the file (function bodies too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("scarce"):
            out += [f"{node.module}.{a.name}" if node.module == "scarce" else node.module for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("scarce")]
    return out


def test_every_module_has_a_layer():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    assert tops <= set().union(*LAYERS), tops - set().union(*LAYERS)


def test_no_import_points_up():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for module in _imports(path):
            parts = module.split(".")
            if len(parts) < 2 or parts[1] in ("__version__",):
                continue
            if _layer(parts[1]) > _layer(own):
                upward.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not upward, "\n".join(upward)
