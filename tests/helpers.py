"""Helpers shared by the tests."""

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np

from marl_grpo.envs import KICK_ACTION as KICK


def scripted_action(o: np.ndarray, lay: dict) -> int:
    """A simple striker, in the agent's own (mirrored) frame: get behind the ball on the line to
    the attacked goal, kick when lined up, walk around the ball when on its wrong side."""
    p = o[lay["self_pos"]].astype(np.float64)
    b = p + o[lay["ball_rel"]]
    goal = p + o[lay["opp_goal_rel"]]
    d = goal - b
    d /= max(np.linalg.norm(d), 1e-9)
    to_ball = b - p
    dist = max(np.linalg.norm(to_ball), 1e-9)
    if o[lay["ball_in_reach"]][0] == 1 and to_ball @ d / dist > 0.99:
        return KICK
    target = b - d * 0.06
    if (p - b) @ d > -0.03:  # on the wrong side of the ball: go around it
        side = np.array([-d[1], d[0]])
        s = np.sign((p - b) @ side) or 1.0
        target = b + side * s * 0.1 - d * 0.05
    v = target - p
    return 1 + int(np.round(np.arctan2(v[1], v[0]) / (np.pi / 4))) % 8


def load_script(name: str) -> ModuleType:
    """`scripts/<name>.py` imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
