"""Read and check a params file (params.yaml or a profile) against the config dataclasses of nlsr_core.config.

An unknown section or key, a value of the wrong type, or one outside the range or choices declared beside its
field (nlsr_core.config.checked) is a one-line NlsrError naming it (`align.lrr: unknown key; expected one of lr,
epochs, ...`), for every section before any stage runs. A float field also takes YAML's string reading of an
exponent without a dot (`2e-4`), which every YAML config writes and YAML 1.1 does not call a float.
`defaults()` is every section at its defaults, which equal params.yaml's values (tests/test_consistency.py).
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path

from nlsr_core.config import SECTIONS, check_section, config_field

# A number YAML 1.1 reads as a string: an exponent without a dot (2e-4, 1E3); nan and inf stay strings.
EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
from nlsr_core.errors import NlsrError


def build(cls, values: dict, where: str):
    """An instance of `cls` from a params mapping, checked key by key (one line naming the first bad one)."""
    if not isinstance(values, dict):
        raise NlsrError(f"{where}: expected a mapping of keys, got {type(values).__name__}")
    kwargs = {}
    for name, value in values.items():
        f = config_field(cls, str(name), where)
        kwargs[f.name] = _coerce(value, f, f"{where}.{name}")
    return cls(**kwargs)


def _coerce(value, f: dataclasses.Field, where: str):
    """A YAML value checked against the field's type: tuples from lists, ints where ints, floats from numbers."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
        return build(f.default_factory, value, where)
    if kind.startswith("tuple["):
        items = value if isinstance(value, list) else [value]
        check = f.metadata.get("check")
        if not items and f.default and not (check and check.nonempty):   # a nonempty field's check says it better
            # DVC's ${section} unpacking writes no option for an empty list, so the command would run the field's
            # default instead of nothing: refuse what cannot be passed on
            raise NlsrError(f"{where}: empty; a stage receives no option for an empty list and would use the "
                            f"default ({', '.join(map(str, f.default))}); expected at least one value")
        inner = kind[len("tuple["):].split(",")[0].strip().rstrip("]")
        return tuple(_scalar(v, inner, where) for v in items)
    return _scalar(value, kind, where)


def _scalar(value, kind: str, where: str):
    nullable = "None" in kind
    kind = kind.replace("| None", "").strip()
    if value is None and nullable:
        return None
    if kind == "float" and isinstance(value, str) and EXPONENT.match(value.strip()):
        value = float(value)
    ok = {"str": isinstance(value, str), "bool": isinstance(value, bool),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(float(value))}.get(kind, True)
    if not ok:
        raise NlsrError(f"{where}: {value!r} is not a{'n' if kind == 'int' else ''} {kind}")
    return float(value) if kind == "float" else value


@dataclass(frozen=True)
class Params:
    """A whole params file: one config per section (missing sections take their defaults)."""

    sections: dict

    def __getattr__(self, name: str):
        try:
            return self.sections[name]
        except KeyError:
            raise AttributeError(name) from None


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and check a params file; unknown sections and keys are one-line errors naming them."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise NlsrError(f"{path}: cannot read ({exc.strerror}); expected a params YAML file") from None
    except yaml.YAMLError as exc:
        raise NlsrError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise NlsrError(f"{path}: expected a mapping of params sections")
    unknown = [s for s in raw if s not in SECTIONS]
    if unknown:
        raise NlsrError(f"{path}: unknown params section '{unknown[0]}'; expected one of {', '.join(SECTIONS)}")
    sections = {}
    for name, cls in SECTIONS.items():
        try:
            sections[name] = build(cls, raw.get(name) or {}, name)
            check_section(name, sections[name])
        except NlsrError as exc:
            raise NlsrError(f"{path}: {exc}") from None
    try:
        sections["study"].check_within(sections["grid"])
    except NlsrError as exc:
        raise NlsrError(f"{path}: {exc}") from None
    return Params(sections)


def defaults() -> Params:
    """Every section at its defaults (equal to params.yaml's values; tests/test_config.py checks it)."""
    return Params({name: cls() for name, cls in SECTIONS.items()})
