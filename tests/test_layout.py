"""The house rules that keep the package navigable: no module-level import cycle, no module over 400 lines, public
seams between modules (no import of another module's ``_private`` names), a README for users under 10 KB."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fastformers_hf", "trainer_callbacks", "hub_cards")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def module_level_imports(module: str) -> list[tuple[str, list[str]]]:
    """``(imported module, names)`` for the imports a module runs when it is imported (not inside functions)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = []

    def visit(body):
        for node in body:
            if isinstance(node, ast.Import):
                found.extend((a.name, []) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                found.append((_resolve(module, node.level, node.module), [a.name for a in node.names]))
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
    visit(tree.body)
    return found


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, names in module_level_imports(module):
            # A parent package is already being imported when its submodules run, so only the module itself
            # (and `from pkg import submodule`) makes an edge.
            for c in [target] + [f"{target}.{n}" for n in names]:
                if c in MODULES and c != module and not module.startswith(c + "."):
                    graph[module].add(c)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def dfs(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


@pytest.mark.parametrize("graph, cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
])
def test_the_cycle_finder_finds_cycles(graph, cycle):
    assert find_cycle(graph) == cycle


def test_no_module_level_import_cycle():
    assert find_cycle(import_graph()) is None


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("fastformers_hf")])
def test_no_module_over_400_lines(module):
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(ROOT)} has {lines} lines; split it by concern"


def test_no_import_of_another_modules_private_names():
    private = []
    for module in MODULES:
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        for node in ast.walk(tree):  # function-level imports too
            if isinstance(node, ast.ImportFrom) and node.level + bool(node.module) > 0:
                target = _resolve(module, node.level, node.module)
                if target.split(".")[0] in PACKAGES and target != module:
                    private += [f"{module}: {target}.{a.name}" for a in node.names
                                if a.name.startswith("_") and not a.name.startswith("__")]
    assert private == []


def test_readme_is_for_users_and_short():
    assert (ROOT / "README.md").stat().st_size < 10_000
    for page in ("distillation", "pruning", "onnx", "serving", "cascades", "hub", "benchmarks"):
        assert (ROOT / "docs" / f"{page}.md").exists(), page
