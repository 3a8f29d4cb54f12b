"""Import-direction rules of the package, checked statically with `ast` (nothing is imported).

Dependencies point one way only:

    marl_grpo.envs <- marl_grpo.agents <- loss core (losses, advantages) <- run <- rl | llm <- tools <- cli / scripts

Imports inside functions and under `if TYPE_CHECKING:` count too: they are still dependencies.
No two modules of the project import each other, directly or around a longer circle. And the
boundaries hold: only `envs` reads the engine's state, only `agents` a policy's layers.
"""

import ast
import graphlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"envs": "marl_grpo.envs", "agents": "marl_grpo.agents", "marl_grpo": "marl_grpo"}
ENVS, AGENTS, RUN, RL, LLM, TOOLS = (f"marl_grpo.{p}" for p in ("envs", "agents", "run", "rl", "llm", "tools"))
CORE = ("marl_grpo.losses", "marl_grpo.advantages")
CLI, PLAY, DEMO = "marl_grpo.cli", "marl_grpo.play", "marl_grpo.demo"


def under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def project_imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Project names imported anywhere in `source`, the text of module `module`, fully dotted:
    `from pkg.mod import x` gives `pkg.mod.x` (x may be a submodule or a name in pkg.mod; `resolve`
    finds the module)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's own package
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if under(m, "marl_grpo")}


def resolve(name: str, modules: set[str]) -> str | None:
    """The module of a dotted imported name: its longest prefix that is a module of `modules`."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def collect() -> dict[str, tuple[str, set[str]]]:
    """file (relative to the repo) -> (its module name, the project modules it imports)."""
    graph = {}
    for folder, prefix in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = [prefix, *path.relative_to(REPO / folder).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            module = ".".join(parts[:-1] if is_package else parts)
            graph[str(path.relative_to(REPO))] = (module, project_imports(path.read_text(), module, is_package))
    return graph


GRAPH = collect()

# rule -> predicate(importing module, imported module) that is True for a forbidden edge
RULES = {
    "1: envs imports only envs": lambda s, t: under(s, ENVS) and not under(t, ENVS),
    "2: loss core imports no envs/agents/rl/llm/run/tools": lambda s, t: under(s, *CORE)
    and under(t, ENVS, AGENTS, RL, LLM, RUN, TOOLS),
    "3: agents imports no run/rl/llm/tools/cli/loss core": lambda s, t: under(s, AGENTS)
    and under(t, RUN, RL, LLM, TOOLS, CLI, *CORE),
    "4: run imports no envs/agents/rl/llm/tools/cli/play/demo": lambda s, t: under(s, RUN)
    and under(t, ENVS, AGENTS, RL, LLM, TOOLS, CLI, PLAY, DEMO),
    "5a: rl imports no llm/tools/cli": lambda s, t: under(s, RL) and under(t, LLM, TOOLS, CLI),
    "5b: llm imports no rl/tools/cli": lambda s, t: under(s, LLM) and under(t, RL, TOOLS, CLI),
    "6: only cli and tools import tools": lambda s, t: not under(s, CLI, TOOLS) and under(t, TOOLS),
}


def violations(rule: str, graph: dict[str, tuple[str, set[str]]]) -> list[str]:
    return [f"{file} -> {t}" for file, (s, targets) in graph.items() for t in sorted(targets) if RULES[rule](s, t)]


def test_every_package_folder_was_parsed():
    modules = {module for module, _ in GRAPH.values()}
    assert {ENVS, AGENTS, RUN, RL, LLM, CLI, *CORE} <= modules
    assert any(under(m, TOOLS) for m in modules)


@pytest.mark.parametrize("rule", RULES)
def test_import_rule(rule):
    bad = violations(rule, GRAPH)
    assert not bad, f"rule {rule} broken by:\n  " + "\n  ".join(bad)


def test_checker_flags_a_violation():
    rule = "4: run imports no envs/agents/rl/llm/tools/cli/play/demo"
    imports = project_imports("from marl_grpo.rl import train", "marl_grpo.run.loop")
    fake = {"marl_grpo/run/loop.py": ("marl_grpo.run.loop", imports)}
    assert violations(rule, fake) == ["marl_grpo/run/loop.py -> marl_grpo.rl.train"]
    type_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from marl_grpo.agents import SoccerPolicy"
    in_function = "def device():\n    from marl_grpo.envs.backend import resolve_device"
    fake = {f"marl_grpo/run/{n}.py": (f"marl_grpo.run.{n}", project_imports(src, f"marl_grpo.run.{n}"))
            for n, src in (("a", type_only), ("b", in_function))}
    assert violations(rule, fake) == ["marl_grpo/run/a.py -> marl_grpo.agents.SoccerPolicy",
                                      "marl_grpo/run/b.py -> marl_grpo.envs.backend.resolve_device"]


def test_parser_resolves_relative_imports():
    modules = {ENVS, AGENTS, "marl_grpo.agents.bots", "marl_grpo.losses", "marl_grpo"}

    def imports(source: str, module: str, is_package: bool = False) -> set[str | None]:
        return {resolve(name, modules) for name in project_imports(source, module, is_package)}

    assert imports("from ..envs import SoccerVecEnv", "marl_grpo.agents.bots") == {ENVS}
    assert imports("from . import bots", "marl_grpo.agents", is_package=True) == {"marl_grpo.agents.bots"}
    assert imports("from marl_grpo import losses\nimport numpy", "marl_grpo.run.update") == {"marl_grpo.losses"}


def test_no_cycle_between_subpackages():
    nodes = {"run", "rl", "llm", "tools", "cli"}
    graph: dict[str, set[str]] = {n: set() for n in nodes}
    for source, targets in GRAPH.values():
        for target in targets:
            s, t = (m.split(".")[1] if m.count(".") else "" for m in (source, target))
            if s in nodes and t in nodes and s != t:
                graph[s].add(t)
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:  # args[1] lists each node before the one that imports it
        pytest.fail(f"import cycle between subpackages: {' -> '.join(reversed(err.args[1]))}")


# ---------------------------------------------------------------------- cycles between modules
def module_graph(graph: dict[str, tuple[str, set[str]]]) -> dict[str, set[str]]:
    """module -> the project modules it imports (type-only and function-level imports included)."""
    modules = {module for module, _ in graph.values()}
    edges: dict[str, set[str]] = {module: set() for module in modules}
    for module, names in graph.values():
        edges[module] |= {t for t in (resolve(n, modules) for n in names) if t is not None and t != module}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `edges` as `[a, b, ..., a]` (a imports b ...), or None: a depth-first
    search that meets a module still on its own path has gone round a circle."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for target in sorted(edges.get(node, ())):
            if target in on_path:
                return path[path.index(target):] + [target]
            if target not in done:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(edges):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_cycle_finder_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) is None  # a diamond is no circle
    # a type-only import one way and a function-level import back make a circle
    sources = {"marl_grpo.x": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from marl_grpo.y import Y",
               "marl_grpo.y": "def f():\n    from marl_grpo import x"}
    fake = {m: (m, project_imports(src, m)) for m, src in sources.items()}
    assert find_cycle(module_graph(fake)) == ["marl_grpo.x", "marl_grpo.y", "marl_grpo.x"]


def test_no_import_cycle_between_modules():
    cycle = find_cycle(module_graph(GRAPH))
    assert cycle is None, "import cycle between modules: " + " -> ".join(cycle)


# ---------------------------------------------------------------------- boundaries
def python_files(*folders: str) -> list[Path]:
    return [path for folder in folders for path in sorted((REPO / folder).rglob("*.py"))]


def test_only_envs_reads_the_engine_state():
    """Outside `envs`, a match is read through `SoccerVecEnv`'s public methods (`score`,
    `steps_in_match`, `player_positions`, `get_state`), never through `engine.state`."""
    bad = [f"{path.relative_to(REPO)}:{n}" for path in python_files("marl_grpo", "agents", "scripts")
           for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"\bengine\.state\b", line)]
    assert not bad, "engine.state read outside envs/ at:\n  " + "\n  ".join(bad)


def body_reads(source: str) -> list[int]:
    """Lines of `source` that index an attribute `body` (`policy.body[0]`: a policy's layers)."""
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "body"]


def test_only_agents_reads_a_policys_layers():
    """Outside `agents`, a policy is used through its methods (`forward_many` for several at once)."""
    assert body_reads("layers = [(p.body[0], p.body[2], p.head) for p in policies]") == [1, 1]  # the check can fail
    bad = [f"{path.relative_to(REPO)}:{n}" for path in python_files("marl_grpo", "envs", "scripts", "tests")
           for n in body_reads(path.read_text())]
    assert not bad, "a policy's layers read outside agents/ at:\n  " + "\n  ".join(bad)
