"""One shape for every package: public names from ``__init__``, everything else private.

- A package's ``__all__`` is exactly what its ``__init__`` exports: the public names it
  defines or imports (submodules excepted), and each of them exists.
- Every module inside a package is private (``_name.py``), except ``__init__`` and
  ``__main__``. The root package's modules (``barkeeper.config``, ``barkeeper.errors``)
  are concepts of their own, like packages.
- No module imports another package's private module: ``barkeeper.x._y`` is imported
  only from inside ``barkeeper.x`` (``barkeeper.validation`` from anywhere in
  ``barkeeper``, since every subpackage is inside it). Tests may reach into the package
  they test; the source may not.

Read from the source with :mod:`ast` (plus one import per package to check that the
names exist), so a violation is reported with its file and line.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import barkeeper

ROOT = Path(barkeeper.__file__).parent
SRC = ROOT.parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_private(module: str) -> bool:
    """Whether ``module`` or a package it is in is private (``barkeeper.db._schema.v1``)."""
    return any(part.startswith("_") for part in module.split(".")[1:])


# Public packages only: a private package (``db._schema``) is its owner's implementation.
PACKAGES = sorted(
    name for p in ROOT.rglob("__init__.py") if not _is_private(name := _module_name(p))
)
MODULES = sorted((_module_name(p), p) for p in ROOT.rglob("*.py") if p.name not in ("__init__.py",))


def _exports(tree: ast.Module) -> set[str]:
    """Public names an ``__init__`` binds at top level (defined or imported)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            names.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.asname or a.name.split(".")[0] for a in node.names)
    names.discard("__all__")
    return {n for n in names if not n.startswith("_") or (n.startswith("__") and n.endswith("__"))}


def _declared_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            value = node.value
            assert isinstance(value, ast.List | ast.Tuple), "__all__ must be a literal list"
            return [ast.literal_eval(e) for e in value.elts]
    return None


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_exactly_what_the_package_exports(package: str) -> None:
    init = SRC.joinpath(*package.split("."), "__init__.py")
    tree = ast.parse(init.read_text(), str(init))
    declared = _declared_all(tree)
    assert declared is not None, f"{package} has no __all__"
    assert len(declared) == len(set(declared)), f"{package}.__all__ repeats a name"
    submodules = {
        p.stem if p.suffix == ".py" else p.name
        for p in init.parent.iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.name != "__init__.py"
    }
    assert set(declared) == _exports(tree) - submodules, package
    module = importlib.import_module(package)
    missing = [name for name in declared if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it lacks: {missing}"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_modules_inside_packages_are_private(module: str, path: Path) -> None:
    package, _, name = module.rpartition(".")
    if package == "barkeeper" or _is_private(module):
        return
    pytest.fail(f"{module} ({path.relative_to(SRC)}) should be private: rename it _{name}.py")


def test_no_public_name_means_two_things() -> None:
    homes: dict[str, list[tuple[str, object]]] = {}
    for package in ["barkeeper.config", "barkeeper.errors", "barkeeper.validation", *PACKAGES]:
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", ()):
            homes.setdefault(name, []).append((package, getattr(module, name)))
    clashes = {
        (name, package)
        for name, found in homes.items()
        if len({id(obj) for _, obj in found}) > 1
        for package, _ in found
    }
    assert clashes == set()


def _private_owner(target: str) -> str | None:
    """The package whose private module ``target`` is, or ``None`` if it is public."""
    parts = target.split(".")
    for i, part in enumerate(parts[1:], 1):
        if part.startswith("_") and not (part.startswith("__") and part.endswith("__")):
            return ".".join(parts[:i])
    return None


def _violations(module: str, tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module]
            if _private_owner(node.module) is None:  # `from package import _module`
                targets = [f"{node.module}.{a.name}" for a in node.names]
        for target in targets:
            if not target.startswith("barkeeper."):
                continue
            owner = _private_owner(target)
            if owner is not None and not module.startswith(owner + "."):
                found.append(f"line {node.lineno}: {target} (private to {owner})")
    return found


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_no_module_imports_another_packages_private_module(module: str, path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    assert _violations(module, tree) == [], module


def test_the_import_checker_catches_a_private_import() -> None:
    tree = ast.parse(
        "from barkeeper.conversations._models import Message\n"
        "from barkeeper.llm import _retry\n"
        "import barkeeper.db._translate\n"
        "from barkeeper.validation import check_id\n"
        "from barkeeper.memory import MemoryStore\n"
    )
    assert _violations("barkeeper.companion._users", tree) == [
        "line 1: barkeeper.conversations._models (private to barkeeper.conversations)",
        "line 2: barkeeper.llm._retry (private to barkeeper.llm)",
        "line 3: barkeeper.db._translate (private to barkeeper.db)",
    ]
    assert _violations("barkeeper.conversations._store", tree)[0].startswith("line 2")


def test_the_export_reader_sees_definitions_imports_and_aliases() -> None:
    tree = ast.parse(
        "from __future__ import annotations\n"
        "from barkeeper.x._a import A, B as C, _hidden\n"
        "import barkeeper.y\n"
        "D = 1\n"
        "def f() -> None: ...\n"
        "__version__ = '1'\n"
        "__all__ = ['A']\n"
    )
    assert _exports(tree) == {"A", "C", "barkeeper", "D", "f", "__version__"}
    assert _declared_all(tree) == ["A"]
