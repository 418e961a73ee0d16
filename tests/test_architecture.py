"""The layer rule of docs/architecture.md, read from the source: which parts of vggnet may import which.

Every import counts, the ones inside functions (imported on first use) and the lazy export tables (`_EXPORTS`) of
the packages included; only the top-level `vggnet/__init__.py`, the public facade that names everything, is exempt.
"""

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "vggnet"

# Modules with no vggnet part above them: small utilities any part may use.
BASE = {
    "_version",
    "allocator",
    "atomic",
    "choices",
    "console",
    "extras",
    "lazy",
    "outputs",
    "plots",
    "runtime",
    "tables",
}

# What each part may import besides itself and BASE (docs/architecture.md draws the same picture).
MAY_IMPORT = {
    "data": set(),
    "metrics": set(),
    "models": {"data"},
    "analysis": {"models"},
    "training": {"metrics", "data", "models", "analysis"},
    "infer": {"metrics", "data", "models", "analysis"},
    "benchmark": {"training", "infer", "metrics", "data", "models", "analysis"},
    "serve": {"infer", "metrics", "data", "models", "analysis"},
    "engines": {"infer", "metrics", "data", "models", "analysis"},
    "cli": {"benchmark", "serve", "engines", "training", "infer", "metrics", "data", "models", "analysis"},
    "__main__": {"cli"},
}
MAY_IMPORT.update({name: set() for name in BASE})


def part_of(module: str) -> str:
    """The part a dotted module name under `vggnet` belongs to: its first component (`vggnet.infer.x` -> infer)."""
    return module.split(".")[1]


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute vggnet module) for every import of a vggnet module in `source`, the module `module`."""
    package = module if is_package else module.rpartition(".")[0]
    found = []

    def resolve(level: int, name: str | None) -> str:
        base = package.split(".")
        if level > 1:
            base = base[: len(base) - (level - 1)]
        return ".".join(base + ([name] if name else []))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            target = resolve(node.level, node.module) if node.level else node.module or ""
            if node.level and node.module is None:  # `from . import x`: each name is a module
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif is_export_table(node):
            for key in node.value.keys:
                if isinstance(key, ast.Constant) and key.value.startswith("."):
                    relative = key.value.lstrip(".")
                    found.append((node.lineno, resolve(len(key.value) - len(relative), relative)))
    return [(line, name) for line, name in found if name == "vggnet" or name.startswith("vggnet.")]


def is_export_table(node: ast.AST) -> bool:
    """Whether `node` assigns a package's lazy export table (`_EXPORTS = {".module": [names]}`)."""
    return (
        isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Dict)
        and any(getattr(target, "id", None) == "_EXPORTS" for target in node.targets)
    )


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports in `source` (the code of `module`) that the layer rule forbids, as readable lines."""
    part = part_of(module)
    allowed = MAY_IMPORT[part] | BASE | {part}
    bad = []
    for line, target in imported_modules(source, module, is_package):
        if target == "vggnet" or part_of(target) not in allowed:
            bad.append(f"{module} (line {line}) imports {target}: {part} may import only {sorted(allowed)}")
    return bad


def source_modules() -> list[tuple[Path, str, bool]]:
    modules = []
    for path in sorted(SOURCE.rglob("*.py")):
        parts = ("vggnet", *path.relative_to(SOURCE).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules.append((path, ".".join(parts[:-1] if is_package else parts), is_package))
    return modules


def test_every_part_of_the_source_has_a_place_in_the_picture():
    parts = {part_of(module) for _, module, _ in source_modules() if module != "vggnet"}
    assert parts <= set(MAY_IMPORT), f"add {sorted(parts - set(MAY_IMPORT))} to MAY_IMPORT and docs/architecture.md"


def test_imports_point_one_way():
    bad = []
    for path, module, is_package in source_modules():
        if module != "vggnet":  # the public facade names every part
            bad += violations(path.read_text(), module, is_package)
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("module", "source", "is_package"),
    [
        ("vggnet.training.loop", "from ..infer.evaluate import evaluate", False),
        ("vggnet.infer.predict", "def f():\n    from vggnet.training import train", False),
        ("vggnet.models.factory", "from ..cli import main", False),
        ("vggnet.data.transforms", "from ..models import VGG", False),
        ("vggnet.training", "_EXPORTS = {'..infer.predict': ['predict']}", True),
        ("vggnet.metrics", "import vggnet", False),
    ],
)
def test_the_rule_catches_an_import_that_points_the_wrong_way(module, source, is_package):
    assert violations(source, module, is_package)


def test_the_rule_allows_imports_that_point_down():
    assert not violations("from ..models import VGG\nfrom .checkpoint import x", "vggnet.training.loop")
    assert not violations("_EXPORTS = {'.loop': ['train']}", "vggnet.training", is_package=True)
    assert not violations("from ..atomic import atomic_save", "vggnet.data.folders")
