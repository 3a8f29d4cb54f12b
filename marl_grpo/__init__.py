"""marl-grpo: a multi-agent soccer simulator (PettingZoo API) and group-relative trainers.

Shape letters: one meaning in every file (docstrings and comments write shapes as `[B, N, D]`).

=====  =====================================================================================
B      matches stepped together (the vector env's batch)
N      players per match, blue then red
C      players the learning policy controls per match (the blue team, or all N in self-play)
D      observation width (`D_in`: the critic's input width; `D_state`: the global state's)
T      steps of a segment (soccer) or tokens of a completion (LLM): the length of a sequence
S      sequences, the rows of the loss core and of the advantage maths (soccer: B * C
       player-segments; LLM: P * G completions)
G      group size: members of one GRPO group (copies, matches or completions)
P      prompts of an LLM batch
A      answers of a task (the 10 actions in soccer)
V      vocabulary size; W: prompt width in tokens
M      the larger team size (the observation has M - 1 teammate and M opponent slots)
K      entities in a set the entity encoder pools (M - 1 teammates or M opponents)
R      rows of one policy forward pass; E: entity embedding width; H: attention heads
F      reward components (soccer: goal, ball touch, progress, shot, distance; LLM: answer, format)
=====  =====================================================================================
"""

# Importing the package changes nothing in the process (no environment variable, thread count or
# import hook; see DESIGN.md, "Process state"): the OpenMP wait policy is the `marl-grpo` command's
# choice, made once at its start (`--omp-wait`, marl_grpo/run/threads.py).

__version__ = "0.1.0"

ENV_ID = "marl_grpo/soccer-v0"


def _register_env() -> None:
    """Register `marl_grpo/soccer-v0` with PettingZoo (AEC and parallel), so that
    `pettingzoo.make("parallel", "marl_grpo/soccer-v0")` works after `import marl_grpo`.

    Entry points are strings: nothing of ours (torch, pygame) is imported until an env is made.
    """
    try:
        from pettingzoo import aec_registry, parallel_registry, register
    except ImportError:  # an older PettingZoo without a registry
        return
    if ENV_ID not in aec_registry:
        register("aec", ENV_ID, entry_point="marl_grpo.envs.soccer_v0:env")
    if ENV_ID not in parallel_registry:
        register("parallel", ENV_ID, entry_point="marl_grpo.envs.soccer_v0:parallel_env")


_register_env()

_LAZY = ("Score", "evaluate")
"""public names imported on first use (PEP 562), so that `import marl_grpo` loads no torch"""


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from marl_grpo.rl import score

        value = getattr(score, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
