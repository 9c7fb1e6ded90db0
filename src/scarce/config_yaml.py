"""YAML as scarce reads recipes and ``key=value`` overrides: ``yaml.SafeLoader`` with the
YAML 1.2 core schema's scalars and no key given twice.

PyYAML implements YAML 1.1, where ``no``/``off``/``yes``/``on`` are booleans, ``010`` is
octal 8 and ``1:30`` is base-60 90: a dataset named ``no`` or ``seed=010`` silently became
something else. Under 1.2 (as in most YAML tools since) only ``true``/``false`` are booleans
and numbers are decimal. Bool options still take yes/no/on/off (``config_parse._coerce``), so
recipes written for 1.1 keep working.
"""

from __future__ import annotations

import re
import typing

import yaml

_TAG = "tag:yaml.org,2002:"
_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class Yaml12Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` resolving bools, ints and floats as the YAML 1.2 core schema does,
    and refusing a key given twice in one mapping: PyYAML keeps the last, so a second
    ``augment:`` block would silently replace the first (an ablation arm trained without the
    part it was written to test)."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_TAG + "bool", _TAG + "int", _TAG + "float")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):  # SafeLoader's own check says so
                break
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key '{key}' appears twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def _scalar(convert):
    return lambda loader, node: convert(loader.construct_scalar(node))


def _float(text: str) -> float:
    return float(text.lower().replace(".inf", "inf").replace(".nan", "nan"))  # .inf, -.inf, .nan: YAML's spelling


Yaml12Loader.add_implicit_resolver(_TAG + "bool", _BOOL, list("tTfF"))
Yaml12Loader.add_implicit_resolver(_TAG + "int", _INT, list("-+0123456789"))
Yaml12Loader.add_implicit_resolver(_TAG + "float", _FLOAT, list("-+0123456789."))
Yaml12Loader.add_constructor(_TAG + "bool", _scalar(lambda text: text.lower() == "true"))
Yaml12Loader.add_constructor(_TAG + "int", _scalar(lambda text: int(text, 10)))  # "010" is ten
Yaml12Loader.add_constructor(_TAG + "float", _scalar(_float))


def load_yaml(text: str):
    """``text`` parsed with :class:`Yaml12Loader` (raises ``yaml.YAMLError`` subclasses)."""
    loader = Yaml12Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class Yaml12Dumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes every string :class:`Yaml12Loader` would read as something
    else. The 1.1 dumper writes the string ``1e3`` plain (not a 1.1 float: no dot), and a 1.2
    reader then loads it as 1000.0: a saved ``config.yaml`` must read back as it was written."""


# Added after the 1.1 resolvers, so a string that either schema reads as non-string is quoted.
Yaml12Dumper.add_implicit_resolver(_TAG + "bool", _BOOL, list("tTfF"))
Yaml12Dumper.add_implicit_resolver(_TAG + "int", _INT, list("-+0123456789"))
Yaml12Dumper.add_implicit_resolver(_TAG + "float", _FLOAT, list("-+0123456789."))


def dump_yaml(data, **kwargs) -> str:
    """``data`` as YAML that :func:`load_yaml` reads back unchanged (keys in insertion order)."""
    return yaml.dump(data, Dumper=Yaml12Dumper, sort_keys=False, **kwargs)
