"""The packages import one way: telemetry -> detection, models -> search -> ensemble."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("telemetry", "detection", "models", "search", "ensemble")
# What each package may import of the project's own packages (itself always).
ALLOWED = {"telemetry": set(), "detection": {"telemetry"}, "models": {"telemetry"},
           "search": {"telemetry", "detection", "models"},
           "ensemble": {"telemetry", "detection", "models", "search"}}


def project_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_the_layers_below(package):
    wrong = {f"{p.relative_to(REPO)} imports {sorted(bad)}"
             for p in (REPO / package).rglob("*.py")
             if (bad := project_imports(p) - ALLOWED[package] - {package})}
    assert not wrong


def test_the_check_sees_an_upward_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import numpy\nfrom ensemble.build import build\ndef f():\n    import search.runner\n")
    assert project_imports(f) == {"ensemble", "search"}


def search_imports(path: Path) -> set[str]:
    """The search/ modules that ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "search":
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("search."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("search.")}
    return found - {path.stem}


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (module -> modules it imports) as a path, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_search_modules_import_each_other_without_a_cycle():
    graph = {p.stem: search_imports(p) for p in (REPO / "search").glob("*.py")}
    assert graph["results"] >= {"experiment"}  # the check reads the imports
    assert import_cycle(graph) is None, " -> ".join(import_cycle(graph))


def test_the_cycle_check_sees_a_cycle(tmp_path):
    (tmp_path / "a.py").write_text("from search import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from search.c import x\n")
    (tmp_path / "c.py").write_text("import search.a\n")
    graph = {p.stem: search_imports(p) for p in tmp_path.glob("*.py")}
    assert import_cycle(graph) == ["a", "b", "c", "a"]
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_ensemble_does_not_import_the_ray_trainable():
    """ensemble/ reads sweeps through search/experiment.py, not through the module Ray runs trials with."""
    wrong = [str(p.relative_to(REPO)) for p in (REPO / "ensemble").rglob("*.py") if "trainable" in search_imports(p)]
    assert not wrong
