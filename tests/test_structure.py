"""The package's shape: no import cycles among stabn_tf modules nor among its sub-packages,
and imports inside functions only for optional heavy dependencies, each with its reason on
the line."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stabn_tf"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            deps.update(t for t in targets if t in modules and t != name)
        graph[name] = deps
    return graph


def _cycle(graph: dict[str, set[str]], ignored=lambda node, dep: False) -> list[str] | None:
    """One import cycle of `graph` (the nodes in order, the first repeated), or None."""
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if ignored(node, dep):
                continue
            if state.get(dep) == 1:
                path = stack + [node, dep]
                return path[path.index(dep):]
            if dep not in state and (found := visit(dep, stack + [node])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_no_import_cycles():
    # A package importing its own submodules is how packages work, not a cycle.
    found = _cycle(_imports(), lambda node, dep: node == "stabn_tf" or dep == "stabn_tf"
                   or dep.startswith(node + "."))
    assert found is None, "import cycle: " + " → ".join(found)


def _part(module: str) -> str | None:
    """The part of stabn_tf a module belongs to: its sub-package (`stabn_tf.data` for
    `stabn_tf.data.convert.shards`) or, at the top, the module itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else None


def test_no_two_packages_import_each_other():
    """Sub-packages (and top-level modules) layer: if `a` imports `b`, nothing in `b`
    imports `a`, directly or through others. A package's own modules may import each other."""
    graph: dict[str, set[str]] = {}
    for module, deps in _imports().items():
        if (part := _part(module)) is not None:
            graph.setdefault(part, set()).update(
                p for p in map(_part, deps) if p is not None and p != part)
    found = _cycle(graph)
    assert found is None, "packages import each other: " + " → ".join(found)


def test_function_local_imports_say_why():
    unexplained = []
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    line = lines[inner.lineno - 1]
                    if "#" not in line:
                        unexplained.append(f"{path.relative_to(ROOT)}:{inner.lineno}: "
                                           f"{line.strip()}")
    assert not unexplained, "imports inside functions without a reason:\n" + \
        "\n".join(unexplained)
