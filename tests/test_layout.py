"""Import-direction rules of the package, checked statically with `ast` (nothing is imported).

Dependencies point one way only:

    marl_grpo.envs <- marl_grpo.agents <- loss core (losses, advantages) <- run <- rl | llm <- tools <- cli / scripts

Imports inside functions and under `if TYPE_CHECKING:` count too: they are still dependencies.
"""

import ast
import graphlib
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
    """Project modules imported anywhere in `source`, the text of module `module`."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's own package
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            if node.module is None or base == "marl_grpo":  # `from pkg import x` may name submodule x
                found.update(f"{base}.{alias.name}" for alias in node.names)
            else:
                found.add(base)
    return {m for m in found if under(m, "marl_grpo")}


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
    "4: run imports no rl/llm/tools/cli/play/demo": lambda s, t: under(s, RUN)
    and under(t, RL, LLM, TOOLS, CLI, PLAY, DEMO),
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
    imports = project_imports("from marl_grpo.rl import train", "marl_grpo.run.loop")
    fake = {"marl_grpo/run/loop.py": ("marl_grpo.run.loop", imports)}
    assert violations("4: run imports no rl/llm/tools/cli/play/demo", fake) == ["marl_grpo/run/loop.py -> marl_grpo.rl"]


def test_parser_resolves_relative_imports():
    assert project_imports("from ..envs import SoccerVecEnv", "marl_grpo.agents.bots") == {ENVS}
    assert project_imports("from . import bots", "marl_grpo.agents", is_package=True) == {"marl_grpo.agents.bots"}
    assert project_imports("from marl_grpo import losses\nimport numpy", "marl_grpo.run.update") == {"marl_grpo.losses"}


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
