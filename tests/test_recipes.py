"""The TorchRL recipe (scripts/recipe_torchrl.py) and TorchRL's PettingZooWrapper over our env.

The other recipes (RLlib, SB3, BenchMARL) need libraries outside the test extra and are run by
hand; see each script's docstring. What they rely on from the env without their library is
tested here (RLlib's render call).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from marl_grpo.envs import INFO_KEYS, REWARD_COMPONENTS, soccer_v0
from helpers import load_script

pytestmark = [
    pytest.mark.filterwarnings("ignore:PettingZoo in TorchRL is tested:UserWarning"),
    pytest.mark.filterwarnings("ignore:Creating .* which inherits from WeightUpdaterBase:DeprecationWarning"),
]
COMPONENT_KEYS = [f"reward_{name}" for name in REWARD_COMPONENTS]


@pytest.fixture(scope="module")
def recipe():
    return load_script("recipe_torchrl")


def check_infos(data, groups: dict[str, list[str]], steps: int) -> None:
    """Every info key is in the rollout per group, [T, n]; the components sum to the reward."""
    for group, agents in groups.items():
        info = data["next", group, "info"]
        assert set(info.keys()) == set(INFO_KEYS)
        for key in INFO_KEYS:
            assert info[key].shape == (steps, len(agents)), key
            assert torch.isfinite(info[key].float()).all(), key
        reward = data["next", group, "reward"]
        assert reward.shape == (steps, len(agents), 1)
        total = sum(info[key] for key in COMPONENT_KEYS)
        torch.testing.assert_close(total, reward.squeeze(-1), atol=1e-5, rtol=1e-5)
        # the distance-to-ball penalty is on at every step: the infos carry real values, not zeros
        assert (info["reward_dist_to_ball"] < 0).all()
        for key in ("score_for", "score_against"):
            score = info[key]
            assert ((score >= 0) & (score == score.round())).all(), key


def test_render_takes_rllibs_mode_argument():
    """RLlib's ParallelPettingZooEnv.render() calls par_env.render(self.render_mode), None there."""
    env = soccer_v0.parallel_env(team_size=2, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render(None)
    assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    np.testing.assert_array_equal(env.render("human"), frame)  # ignored: the env's own mode counts
    env.close()


def test_pettingzoo_wrapper_keeps_reward_components():
    from torchrl.envs import PettingZooWrapper

    max_cycles, steps = 30, 45  # one auto-reset inside the rollout
    env = PettingZooWrapper(soccer_v0.parallel_env(team_size=2, max_cycles=max_cycles), seed=0)
    assert dict(env.group_map) == {"blue": ["blue_0", "blue_1"], "red": ["red_0", "red_1"]}
    torch.manual_seed(0)
    data = env.rollout(steps, break_when_any_done=False)
    check_infos(data, env.group_map, steps)
    # the same score from both sides
    torch.testing.assert_close(data["next", "blue", "info", "score_for"][:, 0],
                               data["next", "red", "info", "score_against"][:, 0])
    # reset's infos (the root of step 0 and of the step after the auto-reset) are all zeros
    for t in (0, max_cycles):
        for key in INFO_KEYS:
            assert (data["blue", "info", key][t] == 0).all(), (t, key)
    done = data["next", "done"].squeeze(-1)
    assert done.nonzero().flatten().tolist() == [max_cycles - 1]
    env.close()


def test_recipe_env_one_group(recipe):
    env = recipe.make_env(team_size=2, max_cycles=20, group_map="one", seed=1)
    assert dict(env.group_map) == {"agents": ["blue_0", "blue_1", "red_0", "red_1"]}
    data = env.rollout(25, break_when_any_done=False)
    check_infos(data, env.group_map, 25)
    # RewardSum: the episode return at the last step of a match is the sum of its rewards
    returns = data["next", "agents", "episode_reward"][19]
    torch.testing.assert_close(returns, data["next", "agents", "reward"][:20].sum(0))
    env.close()


def test_recipe_env_with_a_checkpoint_opponent_has_only_blue(recipe, tmp_path):
    from marl_grpo.agents import SoccerPolicy
    from marl_grpo.agents.checkpoint import write_policy
    from marl_grpo.envs import SoccerConfig

    config = SoccerConfig(team_size=2)
    write_policy(tmp_path, SoccerPolicy(config, hidden=16, device="cpu"), config, {"name": "tiny"})
    env = recipe.make_env(team_size=2, max_cycles=20, seed=1, opponent=str(tmp_path))
    assert dict(env.group_map) == {"blue": ["blue_0", "blue_1"]}
    check_infos(env.rollout(25, break_when_any_done=False), env.group_map, 25)
    env.close()
    with pytest.raises(FileNotFoundError, match=r"opponent='nowhere' is invalid: expected 'none', one of \['random', "
                                                r"'chaser', 'team'\] or a checkpoint folder"):
        recipe.make_env(opponent="nowhere")


def test_torchrl_recipe_with_the_team_bot_in_the_env_trains_only_blue(recipe, device):
    out = recipe.main(["--smoke", "--device", device, "--seed", "1", "--opponent", "team"])
    assert out["groups"] == ["blue"] and out["env_group_map"] == {"blue": ["blue_0", "blue_1"]}
    data = out["last_batch"]
    assert "red" not in data.keys() and ("next", "red") not in data.keys(True)
    check_infos(data, out["env_group_map"], 100)
    assert data["blue", "action"].shape == (100, 2) and torch.isfinite(data["blue", "advantage"]).all()
    for row in out["history"]:
        assert math.isfinite(row["blue/loss"]) and row["blue/episodes"] >= 2


def test_torchrl_recipe_smoke(recipe, device):
    out = recipe.main(["--smoke", "--device", device, "--seed", "3"])
    assert out["groups"] == ["blue", "red"]
    history = out["history"]
    assert [row["iteration"] for row in history] == [0, 1]
    for row in history:
        for group in ("blue", "red"):
            assert math.isfinite(row[f"{group}/loss"])
            assert row[f"{group}/episodes"] >= 2  # 100 frames, matches of 40 steps
            assert math.isfinite(row[f"{group}/episode_reward_mean"])
            assert row[f"{group}/episode_reward_mean"] < 0.5  # dist penalty; a goal is worth 1
    data = out["last_batch"]
    assert data.batch_size == (100,)
    check_infos(data, out["env_group_map"], 100)
    # the policy wrote actions and log-probs per player, and GAE its advantages
    for group in ("blue", "red"):
        assert data[group, "action"].shape == (100, 2)
        assert data[group, "sample_log_prob"].shape == (100, 2)
        assert torch.isfinite(data[group, "advantage"]).all()
    # it ends by scoring the blue policy with marl_grpo.evaluate: 100 matches of 40 steps vs the team bot
    score = out["score"]
    assert (score.matches, score.opponent, score.max_cycles, score.seeds) == (100, "team", 40, range(3, 103))
    assert score.wins + score.draws + score.losses == 100
