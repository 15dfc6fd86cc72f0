"""The house's shape: imports point one way between the layers, no two modules import each other
(directly or through others, function-level imports included), and nothing outside ``sched_env``
imports its private kernels."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("instances", "sched_env", "baselines", "agents", "experiments", "service")
#: What each layer may import from the project (the layers below it).
MAY_IMPORT = {
    "instances": {"instances"},
    "sched_env": {"instances", "sched_env"},
    "baselines": {"instances", "sched_env", "baselines"},
    "agents": {"instances", "sched_env", "baselines", "agents"},
    "experiments": set(PACKAGES),
    "service": {"instances", "sched_env", "baselines", "agents", "service"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere in its code (``from a import b`` counts
    ``a.b`` when that is a module, else ``a``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            names = [n for n in names if n in modules] or [node.module]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in PACKAGES and n in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    modules = set(files)
    return {name: _imports(path, modules) - {name} for name, path in files.items()}


def test_layers_import_only_the_layers_below():
    wrong = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if target.split(".")[0] not in MAY_IMPORT[module.split(".")[0]]
    ]
    assert not wrong, wrong


def test_no_module_imports_itself_through_others():
    graph = import_graph()
    # a package's __init__ importing its own modules is how packages work; cycles among modules are not
    graph = {m: {t for t in ts if t not in PACKAGES} for m, ts in graph.items() if m not in PACKAGES}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert not cycles, f"modules that import each other (directly or through others): {cycles}"


@pytest.mark.parametrize("package", ["instances", "baselines", "agents", "experiments", "service"])
def test_private_kernels_stay_inside_sched_env(package):
    users = [m for m, targets in import_graph().items() if m.startswith(package) and "sched_env._kernels" in targets]
    assert not users, f"{users} import sched_env._kernels; use the public sched_env.compiled"


def test_every_service_error_is_a_sched_env_error():
    """Issue 27: ShopError and RefusedEventError sat outside the root; a caller catches one type."""
    import importlib
    import inspect

    pytest.importorskip("fastapi")
    from instances import SchedEnvError

    names = ["app", "client", "mqtt", "opcua", "schemas", "sessions", "shops", "store"]
    for name in names:
        module = importlib.import_module(f"service.{name}")
        for _, error in inspect.getmembers(module, lambda m: inspect.isclass(m) and issubclass(m, Exception)):
            if error.__module__ == module.__name__:
                assert issubclass(error, SchedEnvError), f"{error.__module__}.{error.__name__} is not a SchedEnvError"
