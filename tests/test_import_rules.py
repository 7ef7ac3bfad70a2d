"""The package's layer rules (docs/architecture.md), checked on the source with `ast`.

Every module of unique_asr is parsed, not imported; every `unique_asr.*` import counts, absolute
or relative, at module level or inside a function. A layer may import itself, the layers its rule
names, and the bare `unique_asr` package. unique_asr/attention may also import no third-party
package but torch and triton.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "unique_asr"
ANY = frozenset({"attention", "data", "models", "training", "decoding", "scoring", "config",
                 "bin"})

# layer (sub-package of unique_asr; "" = unique_asr/__init__.py) -> layers it may import
RULES: dict[str, frozenset[str]] = {
    "": frozenset(),
    "attention": frozenset(),
    "data": frozenset(),
    "models": frozenset({"attention"}),
    "training": frozenset({"attention", "data", "models", "scoring"}),
    "decoding": frozenset({"attention", "data", "models", "scoring"}),
    "scoring": frozenset({"data"}),
    "config": ANY,
    "bin": ANY,
}
# layers whose third-party imports are limited too (the standard library is always allowed)
THIRD_PARTY = {"attention": frozenset({"torch", "triton"})}

# Imports that break a rule today, each with the reason it stays for now. The check fails when
# one of them is gone, so that this list only names real exceptions.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def layer_of(module: str) -> str:
    """unique_asr.models.decoder -> 'models'; unique_asr -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(rel_path: str) -> tuple[str, bool]:
    """'unique_asr/models/decoder.py' -> ('unique_asr.models.decoder', False); an __init__.py
    gives its package's name and True."""
    parts = list(Path(rel_path).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imports_of(source: str, rel_path: str) -> list[tuple[int, str, bool]]:
    """(line, imported module, is ours) for every import in the source, relative ones resolved.
    `from unique_asr import x` counts as an import of unique_asr.x."""
    module, is_package = module_name(rel_path)
    package = module if is_package else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(source, filename=rel_path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append((node.lineno, alias.name, alias.name.split(".")[0] == PACKAGE))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level - 1 >= len(base):
                    raise ValueError(f"{rel_path}:{node.lineno}: relative import beyond the top")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == PACKAGE:
                out += [(node.lineno, f"{PACKAGE}.{a.name}", True) for a in node.names]
            else:
                out.append((node.lineno, target, target.split(".")[0] == PACKAGE))
    return out


def violations(source: str, rel_path: str) -> list[tuple[str, str, str]]:
    """(file:line, forbidden layer or package, message) for each import that breaks a rule."""
    module, _ = module_name(rel_path)
    layer = layer_of(module)
    if layer not in RULES:
        message = (f"{rel_path}: no import rule for the layer unique_asr/{layer}; add it to "
                   "RULES here and to docs/architecture.md")
        return [(rel_path, layer, message)]
    allowed = RULES[layer] | {layer, ""}
    found = []
    for line, target, ours in imports_of(source, rel_path):
        where = f"{rel_path}:{line}"
        if ours:
            other = layer_of(target)
            if other not in allowed:
                may = ", ".join(sorted(RULES[layer])) or "nothing else of ours"
                message = (f"{where}: {PACKAGE}.{layer or '(root)'} imports {target}, but may "
                           f"import only: {may}")
                found.append((where, other, message))
        elif layer in THIRD_PARTY:
            top = target.split(".")[0]
            if top not in sys.stdlib_module_names and top not in THIRD_PARTY[layer]:
                only = ", ".join(sorted(THIRD_PARTY[layer]))
                message = (f"{where}: {PACKAGE}.{layer} imports {target}; its only third-party "
                           f"imports are {only}")
                found.append((where, top, message))
    return found


def package_files() -> list[Path]:
    files = sorted((ROOT / PACKAGE).rglob("*.py"))
    assert len(files) > 20, f"found only {len(files)} modules under {ROOT / PACKAGE}"
    return files


def test_package_follows_the_layer_rules():
    bad, seen = [], set()
    for path in package_files():
        rel = path.relative_to(ROOT).as_posix()
        for where, other, message in violations(path.read_text(), rel):
            if (rel, other) in KNOWN_EXCEPTIONS:
                seen.add((rel, other))
            else:
                bad.append(message)
    stale = [f"{f} -> {layer}" for f, layer in KNOWN_EXCEPTIONS if (f, layer) not in seen]
    assert not bad, "imports that break docs/architecture.md's rules:\n" + "\n".join(bad)
    assert not stale, ("KNOWN_EXCEPTIONS names imports that no longer exist; remove them: "
                       + ", ".join(stale))


def test_every_layer_has_a_rule():
    layers = {p.name for p in (ROOT / PACKAGE).iterdir()
              if p.is_dir() and (p / "__init__.py").is_file()}
    assert layers <= set(RULES), (f"layers without an import rule: {sorted(layers - set(RULES))}; "
                                  "add them to RULES and docs/architecture.md")


@pytest.mark.parametrize("rel_path, source, expected", [
    # absolute import inside a function, in the attention library
    ("unique_asr/attention/api.py",
     "import torch\n\ndef f():\n    from unique_asr.models import decoder\n    return decoder\n",
     [("unique_asr/attention/api.py:4", "models")]),
    # relative imports: training must not import decoding, models must not import data
    ("unique_asr/training/loop.py", "from ..decoding.runner import run\n",
     [("unique_asr/training/loop.py:1", "decoding")]),
    ("unique_asr/models/__init__.py", "from .. import data\nfrom . import decoder\n",
     [("unique_asr/models/__init__.py:1", "data")]),
    ("unique_asr/scoring/wer.py", "import unique_asr.decoding.runner as r\n",
     [("unique_asr/scoring/wer.py:1", "decoding")]),
    ("unique_asr/data/fbank.py", "from unique_asr import models\n",
     [("unique_asr/data/fbank.py:1", "models")]),
    # a third-party import the attention library may not have
    ("unique_asr/attention/reference.py", "import numpy as np\nimport math\nimport triton\n",
     [("unique_asr/attention/reference.py:1", "numpy")]),
    # allowed: models -> attention, decoding -> models and data, bin -> anything, data -> itself
    ("unique_asr/models/attention.py", "from ..attention import api\nfrom .rope import f\n", []),
    ("unique_asr/decoding/runner.py",
     "from unique_asr.models import m\nfrom unique_asr.data.paths import RecipeData\n", []),
    ("unique_asr/bin/decode.py", "from unique_asr.training import t\nfrom ..decoding import d\n", []),
    ("unique_asr/data/manifests.py", "from .atomic import write_manifest\nimport lhotse\n", []),
])
def test_checker_reports_forbidden_imports(rel_path, source, expected):
    """The checker itself: a forbidden import is reported with file, line and layer, and the
    message names the import; allowed ones are not reported."""
    found = violations(source, rel_path)
    assert [(where, other) for where, other, _ in found] == expected
    for (where, other, message) in found:
        assert where in message and other in message


def test_checker_reports_a_layer_without_rule(tmp_path):
    """A new sub-package without a rule is reported, read from a file like the real check."""
    path = tmp_path / "unique_asr" / "newlayer" / "x.py"
    path.parent.mkdir(parents=True)
    path.write_text("from unique_asr.models import m\n")
    found = violations(path.read_text(), path.relative_to(tmp_path).as_posix())
    assert len(found) == 1 and "no import rule for the layer unique_asr/newlayer" in found[0][2]
