"""`PettingZooTeamEnv`: any PettingZoo parallel env as the trainer's `TeamVecEnv` (mpe2 and a tiny env of our own)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from marl_grpo.envs.pettingzoo_env import PettingZooTeamEnv, infer_teams
from marl_grpo.envs.team import TeamVecEnv

SPREAD = "mpe2.simple_spread_v3:parallel_env"


class HuntEnv(ParallelEnv):
    """One hunter against two prey; `prey_1` dies (leaves `agents`) after `die_at` steps.

    Obs of agent i: (step, a draw of the env's random stream, i, its last action); reward: its
    action plus a draw, so that runs depend on both the seed and the actions. The episode is
    truncated after `max_cycles` steps, or terminated for everyone after `terminate_at`.
    """

    metadata = {"name": "hunt_v0"}

    def __init__(self, max_cycles: int = 6, die_at: int = 2, terminate_at: int | None = None,
                 action_sizes: tuple[int, int, int] = (3, 3, 3), widths: tuple[int, int, int] = (4, 4, 4)):
        self.possible_agents = ["hunter_0", "prey_0", "prey_1"]
        self.max_cycles, self.die_at, self.terminate_at = max_cycles, die_at, terminate_at
        self._actions = {a: spaces.Discrete(n) for a, n in zip(self.possible_agents, action_sizes)}
        self._observations = {a: spaces.Box(-np.inf, np.inf, (w,), np.float32)
                              for a, w in zip(self.possible_agents, widths)}
        self.rng = np.random.default_rng(0)

    def observation_space(self, agent):
        return self._observations[agent]

    def action_space(self, agent):
        return self._actions[agent]

    def _obs(self, actions):
        return {a: np.array([self.t, self.rng.random(), i, actions.get(a, -1)], np.float32)
                for i, a in enumerate(self.possible_agents) if a in self.agents}

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.t = 0
        return self._obs({}), {a: {} for a in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.agents), (actions, self.agents)
        self.t += 1
        live = list(self.agents)
        rewards = {a: float(actions[a]) + float(self.rng.random()) for a in live}
        obs = self._obs(actions)
        dead = self.t >= self.die_at
        terminated = self.terminate_at is not None and self.t >= self.terminate_at
        terminations = {a: terminated or (a == "prey_1" and dead) for a in live}
        truncations = {a: self.t >= self.max_cycles for a in live}
        self.agents = [a for a in live if not (terminations[a] or truncations[a])]
        return obs, rewards, terminations, truncations, {a: {} for a in live}


def spread(num_envs: int = 4, seed: int = 0, max_cycles: int = 10, **kwargs) -> PettingZooTeamEnv:
    return PettingZooTeamEnv(SPREAD, num_envs=num_envs, seed=seed, N=3, max_cycles=max_cycles, **kwargs)


def random_actions(env: PettingZooTeamEnv, steps: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, env.num_actions, (env.num_envs, env.num_agents), generator=generator)
            for _ in range(steps)]


def play(env: PettingZooTeamEnv, actions: list[torch.Tensor]) -> list[tuple[torch.Tensor, ...]]:
    """obs, rewards, terminated, truncated, episode_return and episode_length of every step."""
    return [(*out[:4], out[4]["episode_return"], out[4]["episode_length"]) for out in map(env.step, actions)]


def same_run(a: list[tuple[torch.Tensor, ...]], b: list[tuple[torch.Tensor, ...]]) -> bool:
    return all(torch.equal(x, y) for step_a, step_b in zip(a, b) for x, y in zip(step_a, step_b))


def test_protocol_shapes_and_spaces(device):
    env = spread(num_envs=3, device=device)
    assert isinstance(env, TeamVecEnv)
    assert (env.num_envs, env.num_agents, env.obs_dim, env.num_actions) == (3, 3, 18, 5)
    assert env.teams == (0, 0, 0) and env.max_steps == 10 and env.can_branch is False
    assert env.device == torch.device(device)
    assert env.envs[0].unwrapped.continuous_actions is False  # mpe2's default: discrete actions
    obs = env.reset(seed=1)
    assert obs.shape == (3, 3, 18) and obs.dtype == torch.float32 and obs.device.type == torch.device(device).type
    # mpe2 has a global state (`state_space`): state() is its own, copy by copy
    assert env.state_dim == 54
    expected = np.stack([e.state() for e in env.envs]).astype(np.float32)
    assert torch.equal(env.state().cpu(), torch.from_numpy(expected))
    obs, rewards, terminated, truncated, infos = env.step(torch.zeros(3, 3, dtype=torch.long, device=device))
    assert obs.shape == (3, 3, 18) and rewards.shape == (3, 3) and rewards.dtype == torch.float32
    assert terminated.shape == truncated.shape == (3,) and terminated.dtype == truncated.dtype == torch.bool
    assert infos["episode_return"].shape == (3, 3) and infos["episode_length"].dtype == torch.int64
    assert torch.equal(infos["episode_length"].cpu(), torch.ones(3, dtype=torch.long))


def test_callable_factory_and_state_concatenates_obs_without_env_state():
    env = PettingZooTeamEnv(HuntEnv, num_envs=2)
    assert env.name.endswith("HuntEnv") and env.agents == ("hunter_0", "prey_0", "prey_1")
    assert env.max_steps == 6 and env.state_dim == 3 * 4
    obs = env.reset(seed=3)
    assert torch.equal(env.state(), obs.reshape(2, 12))


def test_teams_inferred_from_name_prefixes_or_given():
    assert infer_teams(("adversary_0", "agent_0", "agent_1")) == (0, 1, 1)
    assert infer_teams(("agent_0", "agent_1", "agent_2")) == (0, 0, 0)
    assert PettingZooTeamEnv(HuntEnv, num_envs=1).teams == (0, 1, 1)
    given = PettingZooTeamEnv(HuntEnv, num_envs=1, teams={"hunter_0": 1, "prey_0": 0, "prey_1": 0})
    assert given.teams == (1, 0, 0)
    with pytest.raises(ValueError, match=r"teams=.*expected a dict mapping every agent of \['hunter_0'"):
        PettingZooTeamEnv(HuntEnv, num_envs=1, teams={"hunter_0": 0, "prey_0": 1})
    with pytest.raises(ValueError, match="numbered 0, 1, ... with none left out"):
        PettingZooTeamEnv(HuntEnv, num_envs=1, teams={"hunter_0": 0, "prey_0": 2, "prey_1": 2})


def test_reset_is_reproducible_through_auto_resets():
    actions = random_actions(spread(), 25)  # max_cycles 10: two auto-resets per copy
    first, second, other = spread(seed=5), spread(seed=5), spread(seed=6)
    assert torch.equal(first.reset(seed=7), second.reset(seed=7))
    assert same_run(play(first, actions), play(second, actions))
    # copies start differently (seed + b), and another seed plays another run
    obs = first.reset(seed=7)
    assert not torch.equal(obs[0], obs[1])
    assert not torch.equal(other.reset(seed=8), obs)
    # the auto-reset starts new episodes, not a replay of the seeded ones
    for _ in range(10):
        auto, _, _, truncated, _ = first.step(actions[0])
    assert bool(truncated.all()) and not torch.equal(auto, obs)


def test_reset_blocks_identical_within_a_block_different_across():
    env = spread(num_envs=6)
    obs = env.reset_blocks(seed=11, group_size=3)
    assert torch.equal(obs[0], obs[1]) and torch.equal(obs[0], obs[2])
    assert torch.equal(obs[3], obs[4]) and torch.equal(obs[3], obs[5])
    assert not torch.equal(obs[0], obs[3])
    # block k starts as a plain reset's copy k: both use seed + k
    assert torch.equal(obs[3], spread(num_envs=2).reset(seed=11)[1])
    # identical starts and identical actions: identical steps within a block
    step_obs, rewards, *_ = env.step(torch.ones(6, 3, dtype=torch.long))
    assert torch.equal(step_obs[0], step_obs[2]) and torch.equal(rewards[0], rewards[1])
    with pytest.raises(ValueError, match=r"group_size=4 is invalid: expected an int >= 1 dividing num_envs=6"):
        env.reset_blocks(seed=0, group_size=4)


def test_auto_reset_reports_the_ended_episode():
    env = spread(num_envs=3, max_cycles=10)
    env.reset(seed=2)
    manual = torch.zeros(3, 3, dtype=torch.float64)
    handed_out = []
    for t, actions in enumerate(random_actions(env, 10, seed=1)):
        obs, rewards, terminated, truncated, infos = env.step(actions)
        manual += rewards.double()
        handed_out.append(infos)
        assert not bool(terminated.any())
        assert bool(truncated.all()) == (t == 9)
    assert torch.equal(infos["episode_length"], torch.full((3,), 10))
    assert torch.allclose(infos["episode_return"].double(), manual, rtol=1e-5, atol=1e-4)
    # simple_spread's reward is shared: every agent's return is the same, and negative (distance)
    assert bool((infos["episode_return"] < 0).all())
    # the auto-reset put fresh episodes in: their clock restarts at the next step
    ended_return = infos["episode_return"].clone()
    _, _, _, _, after = env.step(torch.zeros(3, 3, dtype=torch.long))
    assert torch.equal(after["episode_length"], torch.ones(3, dtype=torch.long))
    assert torch.equal(handed_out[-1]["episode_return"], ended_return)  # tensors handed out never change


def test_random_policy_mean_return_on_simple_spread_is_finite_and_negative():
    env = spread(num_envs=8, max_cycles=25)
    env.reset(seed=0)
    returns = []
    for actions in random_actions(env, 50, seed=3):
        _, _, terminated, truncated, infos = env.step(actions)
        done = terminated | truncated
        returns += infos["episode_return"][done].mean(1).tolist()
    assert len(returns) == 16  # two 25-step episodes per copy
    mean = float(np.mean(returns))
    assert math.isfinite(mean) and mean < -1.0


def test_dead_agents_are_padded_and_their_actions_ignored():
    env = PettingZooTeamEnv(HuntEnv, num_envs=2, max_cycles=5, die_at=2)
    obs = env.reset(seed=0)
    assert torch.equal(obs[:, :, 2], torch.tensor([[0.0, 1, 2]] * 2))
    total = torch.zeros(2, 3)
    actions = torch.tensor([[2, 1, 1], [0, 2, 2]])
    for t in range(1, 6):
        obs, rewards, terminated, truncated, infos = env.step(actions)
        total += rewards
        if t <= 2:  # alive while stepped: prey_1's last obs and reward arrive on the step it dies
            assert bool((obs[:, 2, 3] == actions[:, 2].float()).all()) and bool((rewards[:, 2] >= actions[:, 2]).all())
        if 2 < t < 5:
            assert bool((obs[:, 2] == 0).all()) and bool((rewards[:, 2] == 0).all())
            assert bool((obs[:, :2, 0] == t).all())
        assert not bool(terminated.any())
    assert bool(truncated.all())
    assert torch.equal(infos["episode_length"], torch.tensor([5, 5]))
    assert torch.allclose(infos["episode_return"], total)
    # the auto-reset brought prey_1 back
    assert torch.equal(obs[:, :, 2], torch.tensor([[0.0, 1, 2]] * 2))


def test_terminated_versus_truncated_and_max_steps():
    env = PettingZooTeamEnv(HuntEnv, num_envs=1, max_cycles=10, terminate_at=3, die_at=99)
    for t in range(1, 4):
        _, _, terminated, truncated, infos = env.step(torch.zeros(1, 3, dtype=torch.long))
    assert terminated.tolist() == [True] and truncated.tolist() == [False]
    # max_steps shorter than the env's own limit cuts the episode: truncated
    cut = PettingZooTeamEnv(HuntEnv, num_envs=1, max_steps=2, max_cycles=10, die_at=99)
    assert cut.max_steps == 2
    for _ in range(2):
        _, _, terminated, truncated, infos = cut.step(torch.zeros(1, 3, dtype=torch.long))
    assert terminated.tolist() == [False] and truncated.tolist() == [True] and infos["episode_length"].tolist() == [2]


def test_get_state_set_state_resumes_exactly():
    env = spread(num_envs=3, max_cycles=10)
    env.reset(seed=4)
    actions = random_actions(env, 26, seed=2)
    play(env, actions[:14])  # past the first auto-reset: the episode counters are in the snapshot
    snapshot = env.get_state()
    assert all(isinstance(v, torch.Tensor) for v in snapshot.values())  # `.to(device)` in the trainer's resume
    expected = play(env, actions[14:])  # crosses the auto-reset at step 20
    obs = env.set_state({k: v.to("cpu") for k, v in snapshot.items()})
    assert obs.shape == (3, 3, 18)
    assert same_run(play(env, actions[14:]), expected)
    # into another adapter (a checkpoint loaded by a new run)
    fresh = spread(num_envs=3, max_cycles=10, seed=99)
    assert torch.equal(fresh.set_state(snapshot), obs)
    assert same_run(play(fresh, actions[14:]), expected)
    # the custom env resumes too, with a dead agent and running returns
    hunt = PettingZooTeamEnv(HuntEnv, num_envs=2, max_cycles=5)
    hunt_actions = random_actions(hunt, 8, seed=5)
    play(hunt, hunt_actions[:3])
    saved = hunt.get_state()
    expected = play(hunt, hunt_actions[3:])
    hunt.set_state(saved)
    assert same_run(play(hunt, hunt_actions[3:]), expected)
    with pytest.raises(ValueError, match="expected the 'instances' of get_state"):
        hunt.set_state({"obs": torch.zeros(1)})


def test_branch_is_refused():
    env = spread(num_envs=2)
    with pytest.raises(ValueError, match=r"mpe2\.simple_spread_v3:parallel_env: the PettingZoo adapter cannot copy"
                                         r".*group mode 'team' or 'episode'"):
        env.branch([0], 2)


def test_bad_factories_and_spaces():
    with pytest.raises(ValueError, match=r"module 'no_such_env_module' was not found.*'<module>:<function>'"):
        PettingZooTeamEnv("no_such_env_module:parallel_env", num_envs=1)
    with pytest.raises(ValueError, match=r"module 'mpe2\.simple_spread_v3' has no function 'paralel_env': "
                                         r"its env constructors are env, parallel_env, raw_env"):
        PettingZooTeamEnv("mpe2.simple_spread_v3:paralel_env", num_envs=1)
    with pytest.raises(ValueError, match=r"PettingZoo env 'mpe2\.simple_spread_v3' is invalid: expected"):
        PettingZooTeamEnv("mpe2.simple_spread_v3", num_envs=1)
    with pytest.raises(ValueError, match=r"returned an AEC env .*not accepted.*parallel_env"):
        PettingZooTeamEnv("mpe2.simple_spread_v3:env", num_envs=1)
    with pytest.raises(ValueError, match=r"agent 'prey_0' has Discrete\(4\) actions but 'hunter_0' has Discrete\(3\)"):
        PettingZooTeamEnv(HuntEnv, num_envs=1, action_sizes=(3, 4, 3))
    with pytest.raises(ValueError, match=r"agent 'prey_1' observes 5 values but 'hunter_0' observes 4"):
        PettingZooTeamEnv(HuntEnv, num_envs=1, widths=(4, 4, 5))
    with pytest.raises(ValueError, match=r"Discrete action space \(pass continuous_actions=False\)"):
        PettingZooTeamEnv(SPREAD, num_envs=1, continuous_actions=True)
    with pytest.raises(ValueError, match=r"building the env with \{'N': 3, 'bogus': 1\} failed"):
        PettingZooTeamEnv(SPREAD, num_envs=1, N=3, bogus=1)
    with pytest.raises(ValueError, match=r"num_envs=0 is invalid"):
        PettingZooTeamEnv(HuntEnv, num_envs=0)
    env = spread(num_envs=2)
    with pytest.raises(ValueError, match=r"actions must have shape \(num_envs, num_agents\) = \(2, 3\), got \(2, 2\)"):
        env.step(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 4\]"):
        env.step(torch.full((2, 3), 5))


class NoLimitEnv(HuntEnv):
    """`HuntEnv` without a `max_cycles` attribute: the adapter cannot know the longest episode."""

    def __init__(self):
        super().__init__()
        self.limit = self.max_cycles
        del self.max_cycles

    def step(self, actions):
        self.max_cycles = self.limit
        try:
            return super().step(actions)
        finally:
            del self.max_cycles


def test_max_steps_required_without_max_cycles():
    with pytest.raises(ValueError, match=r"has no max_cycles attribute: pass max_steps"):
        PettingZooTeamEnv(NoLimitEnv, num_envs=1)
    assert PettingZooTeamEnv(NoLimitEnv, num_envs=1, max_steps=4).max_steps == 4
