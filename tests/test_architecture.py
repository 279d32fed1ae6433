"""cnnq's imports point one way: no cycle between its modules, and no layer imports one above it.

Every `import` in every module counts, wherever it stands: at module level, inside a function (kept
there to stay light, not to hide a circle) or under `TYPE_CHECKING`. `import cnnq.a.b` is an arrow to
`cnnq.a.b`; `from cnnq.a import b` is an arrow to the module `cnnq.a.b` when there is one, else to
`cnnq.a` (an attribute of its `__init__`); relative imports are resolved first. The layers, lowest
first, are those of docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cnnq

PACKAGE = Path(cnnq.__file__).parent

LAYERS: list[tuple[str, ...]] = [
    (),  # the modules beside the packages (cnnq.errors, cnnq.settings, cnnq.atomic_file...): no package
    ("cnnq.models",),  # the model zoo
    ("cnnq.data",),  # datasets
    ("cnnq.jobs",),  # what a job is and does: never SQL (it reports through its Reporter)
    ("cnnq.db",),  # how a job is remembered
    ("cnnq.lifecycle", "cnnq.sweeps"),  # a job's life: submit, claim, end, cancel; sweeps of jobs
    ("cnnq.workers",),  # how jobs are carried: Celery, the job process, heartbeats
    ("cnnq.cli", "cnnq.dashboard", "cnnq.__main__"),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def cnnq_modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts}


def _imported(node: ast.Import | ast.ImportFrom, here: str, is_package: bool, modules: set[str]) -> set[str]:
    """The cnnq modules one import statement of module `here` reaches."""

    def nearest(name: str) -> str:  # `cnnq.a.b.f` -> `cnnq.a.b`, the deepest module it names
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    if isinstance(node, ast.Import):
        return {nearest(alias.name) for alias in node.names if alias.name.split(".")[0] == "cnnq"}
    base = node.module or ""
    if node.level:
        package = here.split(".") if is_package else here.split(".")[:-1]
        anchor = package[: len(package) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    if base.split(".")[0] != "cnnq":
        return set()
    return {
        f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else nearest(base) for alias in node.names
    }


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {module it imports: the line of the first such import}."""
    modules = cnnq_modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        arrows = graph.setdefault(name, {})
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _imported(node, name, path.name == "__init__.py", set(modules)):
                    if target != name:
                        arrows.setdefault(target, node.lineno)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str) -> int:
    for level, prefixes in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return level
    if module.count(".") == 1 and not (PACKAGE / module.split(".")[1] / "__init__.py").exists():
        return 0
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS (and to docs/architecture.md)")


def test_the_graph_sees_function_level_and_relative_imports() -> None:
    graph = import_graph()
    assert len(graph) > 100
    # function level: the CLI imports the database inside its commands, to start fast
    assert "cnnq.db.jobs" in graph["cnnq.cli.jobs"]
    assert graph["cnnq.__main__"] == {"cnnq.cli.app": 1}
    modules = set(cnnq_modules())
    relative = ast.parse("from . import spec\nfrom .spec import Param\nfrom .. import errors").body
    assert [_imported(node, "cnnq.sweeps.study", False, modules) for node in relative] == [
        {"cnnq.sweeps.spec"},
        {"cnnq.sweeps.spec"},
        {"cnnq.errors"},
    ]
    absolute = ast.parse(
        "import cnnq.db.tables\nfrom cnnq.db.jobs import get_job\nfrom cnnq import errors"
    ).body
    assert [_imported(node, "cnnq.x", False, modules) for node in absolute] == [
        {"cnnq.db.tables"},
        {"cnnq.db.jobs"},
        {"cnnq.errors"},
    ]
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_cnnq_modules() -> None:
    graph = import_graph()
    found = cycles(graph)
    described = [
        [f"{a}:{graph[a][b]} -> {b}" for a in component for b in sorted(graph[a]) if b in component]
        for component in found
    ]
    assert found == [], f"import cycles: {described}"


def test_no_layer_imports_one_above_it() -> None:
    # the team's rule: db, jobs, data and models never reach the machinery that carries jobs
    core = ("cnnq.db", "cnnq.jobs", "cnnq.data", "cnnq.models")
    above = ("cnnq.lifecycle", "cnnq.sweeps", "cnnq.workers", "cnnq.cli", "cnnq.dashboard")
    assert max(map(layer_of, core)) < min(map(layer_of, above))
    graph = import_graph()
    upward = [
        f"{module}:{line} -> {target}"
        for module, arrows in sorted(graph.items())
        for target, line in sorted(arrows.items())
        if layer_of(target) > layer_of(module)
    ]
    assert upward == [], f"imports that point up: {upward}"
