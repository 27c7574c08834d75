"""The house rules of ../shared/ARCHITECTURE.md, checked on the package's own imports: every wing imports
only the wings its row allows, and no module reaches itself through a chain of imports.

Every ``import`` counts, also the ones inside functions and under ``TYPE_CHECKING``: a lazy import
still ties two modules together. The package's top ``bias_suite/__init__.py`` is exempt as an importer
only: its public names resolve lazily (nothing is imported when ``import bias_suite`` runs), so it
may point at every wing, and every wing may read ``bias_suite.__version__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bias_suite"

# Wing of each top-level name, lowest first (ARCHITECTURE.md, "Wings"); 0: importable by every wing.
WINGS = {
    "demo": 0, "data": 0,
    "errors": 1, "layers": 1, "options": 1, "vocabulary": 1,
    "metrics": 2, "benchmarks": 3, "models": 4, "capture": 5, "measure": 6, "gate": 7, "report": 8, "run": 9,
    "plugin": 10, "__main__": 10, "tools": 10,
}
MAY_IMPORT = {
    1: {1}, 2: {1}, 3: {1}, 4: {1, 3}, 5: {1, 2, 3, 4}, 6: {1, 2, 3, 4, 5}, 7: {1, 2, 3},
    8: {1, 2, 7}, 9: {1, 2, 3, 4, 5, 6, 7, 8}, 10: set(range(1, 11)),
}
MOST_FLAT_MODULES = 8


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, known: set[str]) -> set[str]:
    """The package's modules ``path`` imports (``from bias_suite.x import y`` counts as ``bias_suite.x.y``
    when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & known
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined in the module (or its __init__) itself
                found.add(node.module)
    return {name for name in found if name in known}


def wing(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return 0  # the package's top: __version__ (see the module docstring)
    if parts[1] not in WINGS:
        raise AssertionError(f"{module}: its wing {parts[1]!r} is not in ARCHITECTURE.md's table (add it to both)")
    return WINGS[parts[1]]


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(path, set(known)) - {name} for name, path in known.items() if name != "bias_suite"}


def test_every_wing_imports_only_the_wings_below_it_that_its_row_allows():
    wrong = []
    for importer, targets in sorted(graph().items()):
        level = wing(importer)
        for target in sorted(targets):
            other = wing(target)
            same_wing = importer.split(".")[:2] == target.split(".")[:2]
            if other != 0 and not same_wing and other not in MAY_IMPORT.get(level, set()):
                wrong.append(f"{importer} (wing {level}) imports {target} (wing {other})")
    assert not wrong, "imports against ARCHITECTURE.md:\n" + "\n".join(wrong)


def test_no_module_imports_itself_through_others():
    edges = graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" → ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_at_most_eight_modules_sit_flat_at_the_package_top():
    flat = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(flat) <= MOST_FLAT_MODULES, flat


@pytest.mark.parametrize("package", sorted(path.parent.name for path in PACKAGE.glob("*/__init__.py")))
def test_each_wing_says_what_it_does_and_what_it_may_import(package):
    docstring = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text(encoding="utf-8"))) or ""
    if package in ("demo", "tools"):
        assert docstring, f"bias_suite/{package}/__init__.py has no docstring"
    else:
        assert "may import" in " ".join(docstring.lower().split()), \
            f"bias_suite/{package}/__init__.py does not say what it may import"


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The rule can fail: a metrics module that imports the gate is reported."""
    fake = tmp_path / "bias_suite"
    (fake / "metrics").mkdir(parents=True)
    (fake / "gate").mkdir()
    for init in (fake / "__init__.py", fake / "metrics" / "__init__.py", fake / "gate" / "__init__.py"):
        init.write_text('"""May import nothing."""\n')
    (fake / "gate" / "rows.py").write_text("")
    (fake / "metrics" / "bad.py").write_text("from bias_suite.gate.rows import ResultRow\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    with pytest.raises(AssertionError, match=r"bias_suite.metrics.bad \(wing 2\) imports bias_suite.gate.rows"):
        test_every_wing_imports_only_the_wings_below_it_that_its_row_allows()
