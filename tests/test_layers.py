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
