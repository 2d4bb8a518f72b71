"""No module of the package imports itself back, not even through a function-local import.

A function-local import that closes a cycle works only as long as nothing at import time
takes that path, which no test notices until someone moves an import to the top. The
graph is read from the source (every ``import`` statement, wherever it stands), so a
cycle is found before anything runs it.

An edge goes to the module an import names: ``from a.b import c`` is an edge to ``a.b.c``
when that is a module of the package, else to ``a.b``. A package's ``__init__`` is not an
implied dependency of its submodules (Python runs it first, but a package that re-exports
its submodules is not a cycle). Imports under ``if TYPE_CHECKING:`` are left out: they never
run (annotations are strings under ``from __future__ import annotations``), so a strategy's
``check_config(args, config: RunConfig)`` may name the config it is checked against.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[2] / "mtsearch"


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` (at ``path``) imports anywhere in its source."""
    found = set()
    tree = ast.parse(path.read_text(), str(path))
    type_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in modules:
                    found.add(target)
                elif base in modules:
                    found.add(base)
    found.discard(name)
    return found


def import_graph(package: Path) -> nx.DiGraph:
    modules = module_files(package)
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        graph.add_edges_from((name, target) for target in imported_modules(name, path, modules))
    return graph


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert graph.number_of_nodes() > 50 and graph.number_of_edges() > 100  # the whole package was read
    assert "mtsearch.train.simcse" in graph["mtsearch.train.trainer"]  # function-local imports count
    cycles = [" -> ".join([*c, c[0]]) for c in nx.simple_cycles(graph)]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_a_cycle_through_a_function_local_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.a import f\n")
    (pkg / "sub" / "a.py").write_text("import pkg.b\n\ndef f():\n    pass\n")
    (pkg / "b.py").write_text("def g():\n    from .sub import c\n")
    (pkg / "sub" / "c.py").write_text("def h():\n    from ..sub import a\n")
    graph = import_graph(pkg)
    assert set(graph.edges) == {
        ("pkg.sub", "pkg.sub.a"),
        ("pkg.sub.a", "pkg.b"),
        ("pkg.b", "pkg.sub.c"),
        ("pkg.sub.c", "pkg.sub.a"),
    }
    assert sorted(map(sorted, nx.simple_cycles(graph))) == [["pkg.b", "pkg.sub.a", "pkg.sub.c"]]
