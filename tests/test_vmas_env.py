"""`VmasTeamEnv`: VMAS scenarios as the trainer's `TeamVecEnv` (navigation and balance, VMAS's defaults)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from marl_grpo.envs.team import TeamVecEnv
from marl_grpo.envs.vmas_env import BRANCHABLE_SCENARIOS, VmasTeamEnv

B = 8
SCENARIOS = {"navigation": (4, 18), "balance": (3, 16)}
"""VMAS's default agent count and observation width of each branchable scenario"""


def random_actions(env: VmasTeamEnv, generator: torch.Generator, rows: int | None = None) -> torch.Tensor:
    return torch.randint(0, env.num_actions, (rows or env.num_envs, env.num_agents), generator=generator).to(env.device)


def play(env: VmasTeamEnv, actions: list[torch.Tensor]) -> list[tuple[torch.Tensor, ...]]:
    """obs, rewards, terminated, truncated of each step, on the CPU."""
    return [tuple(x.cpu() for x in env.step(a)[:4]) for a in actions]


def assert_same(left: list[tuple[torch.Tensor, ...]], right: list[tuple[torch.Tensor, ...]]) -> None:
    for step, (a, b) in enumerate(zip(left, right, strict=True)):
        for name, x, y in zip(("obs", "rewards", "terminated", "truncated"), a, b):
            assert torch.equal(x, y), f"{name} differ at step {step}"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_protocol_attributes_and_shapes(scenario, device):
    env = VmasTeamEnv(scenario, num_envs=B, device=device, seed=0)
    N, D = SCENARIOS[scenario]
    assert isinstance(env, TeamVecEnv)
    assert (env.num_envs, env.num_agents, env.obs_dim, env.num_actions) == (B, N, D, 9)
    assert env.teams == (0,) * N and env.max_steps == 100 and env.can_branch
    assert env.state_dim == N * D and env.device.type == device
    obs = env.reset(seed=1)
    assert obs.shape == (B, N, D) and obs.dtype == torch.float32 and obs.device.type == device
    assert torch.equal(env.state(), obs.reshape(B, N * D))
    obs, rewards, terminated, truncated, infos = env.step(torch.zeros(B, N, dtype=torch.long, device=device))
    assert obs.shape == (B, N, D) and rewards.shape == (B, N) and rewards.dtype == torch.float32
    assert terminated.shape == truncated.shape == (B,) and terminated.dtype == truncated.dtype == torch.bool
    assert infos["episode_return"].shape == (B, N) and infos["episode_length"].shape == (B,)
    assert torch.equal(infos["episode_length"].cpu(), torch.ones(B, dtype=torch.long))
    assert env.state().shape == (B, env.state_dim)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize(("num_envs", "src_idx", "group_size"), [(8, [5, 0, 5, 2], 2), (2, [1], 2)])
def test_branch_copies_replay_their_source_bit_for_bit(scenario, num_envs, src_idx, group_size, device):
    """Copies made by `branch` mid-episode play exactly what their source plays under the same actions,
    through auto-resets (max_steps=12): the source's trajectory is recorded in a second env. With two
    copies, VMAS's two-wide constants (gravity, action ranges) must not pass for per-copy tensors."""
    gen = torch.Generator().manual_seed(1)
    source = VmasTeamEnv(scenario, num_envs=num_envs, device=device, seed=0, max_steps=12)
    source.reset(seed=4)
    play(source, [random_actions(source, gen) for _ in range(7)])  # mid-episode: velocities, shaping, counters
    desync = source.get_state()  # copies at different steps of their episodes, so each truncates at its own time
    desync["adapter.t"] = torch.arange(num_envs, device=device) % 12
    desync["adapter.episodes"] = torch.arange(num_envs) % 3  # and at different episodes of their streams
    source.set_state(desync)
    snapshot = source.get_state()
    actions = [random_actions(source, gen) for _ in range(30)]
    recorded = play(source, actions)
    assert any(step[3].any() for step in recorded), "no truncation: the test would not cover auto-resets"

    rows = torch.tensor(src_idx).repeat_interleave(group_size)
    copies = VmasTeamEnv(scenario, num_envs=num_envs, device=device, seed=99, max_steps=12)  # all overwritten
    copies.set_state(snapshot)
    obs = copies.branch(src_idx, group_size)
    assert torch.equal(obs.cpu(), snapshot["adapter.obs"][rows].cpu())
    replayed = play(copies, [a[rows.to(a.device)] for a in actions])
    assert_same(replayed, [tuple(x[rows] for x in step) for step in recorded])


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_branch_block_copies_play_alike_in_one_env(scenario):
    gen = torch.Generator().manual_seed(2)
    env = VmasTeamEnv(scenario, num_envs=B, seed=3)
    play(env, [random_actions(env, gen) for _ in range(5)])
    before = env.get_state()["adapter.obs"]
    obs = env.branch([6, 1], 4)
    assert torch.equal(obs[:4], before[6].expand(4, -1, -1)) and torch.equal(obs[4:], before[1].expand(4, -1, -1))
    for _ in range(30):
        block_actions = random_actions(env, gen, rows=2).repeat_interleave(4, 0)
        obs, rewards, _, _, infos = env.step(block_actions)
        for block in (obs, rewards, infos["episode_return"]):
            assert torch.equal(block[:4], block[:1].expand_as(block[:4]))
            assert torch.equal(block[4:], block[4:5].expand_as(block[4:]))
    assert not torch.equal(obs[0], obs[4])


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_get_state_set_state_resumes_exactly(scenario):
    gen = torch.Generator().manual_seed(3)
    env = VmasTeamEnv(scenario, num_envs=B, seed=5, max_steps=9)
    play(env, [random_actions(env, gen) for _ in range(4)])
    snapshot = env.get_state()
    kept = {key: value.clone() for key, value in snapshot.items()}
    actions = [random_actions(env, gen) for _ in range(20)]
    first = play(env, actions)
    for key, value in snapshot.items():  # a snapshot is a copy: later steps leave it alone
        assert torch.equal(value, kept[key]), key
    assert torch.equal(env.set_state(snapshot), kept["adapter.obs"])
    assert_same(play(env, actions), first)
    fresh = VmasTeamEnv(scenario, num_envs=B, seed=123, max_steps=9)  # never stepped: made-on-reward attributes too
    fresh.set_state(snapshot)
    assert_same(play(fresh, actions), first)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_seeded_runs_are_reproducible(scenario):
    gen = torch.Generator().manual_seed(4)
    first = VmasTeamEnv(scenario, num_envs=B, seed=0, max_steps=5)
    second = VmasTeamEnv(scenario, num_envs=B, seed=1, max_steps=5)
    obs = first.reset(seed=11)
    assert torch.equal(second.reset(seed=11), obs)
    assert not torch.equal(first.reset(seed=12), obs)
    assert len({tuple(obs[b].flatten().tolist()) for b in range(B)}) == B  # the copies start apart
    actions = [random_actions(first, gen) for _ in range(12)]  # two auto-resets: their starts are seeded too
    first.reset(seed=11)
    assert_same(play(first, actions), play(second, actions))


def test_auto_reset_on_truncation_reports_the_episode():
    gen = torch.Generator().manual_seed(5)
    env = VmasTeamEnv("navigation", num_envs=B, seed=2, max_steps=6)
    env.reset(seed=8)
    total = torch.zeros(B, env.num_agents)
    ended = []
    for step in range(1, 14):
        obs_before = env.state()
        obs, rewards, terminated, truncated, infos = env.step(random_actions(env, gen))
        total = total + rewards
        assert not terminated.any()
        if step % 6:
            assert not truncated.any()
            assert torch.equal(infos["episode_length"], torch.full((B,), step % 6))
            continue
        assert truncated.all()
        assert torch.equal(infos["episode_return"], total)  # summed in the same order: bit for bit
        assert torch.equal(infos["episode_length"], torch.full((B,), 6))
        assert not torch.equal(obs, obs_before.reshape(obs.shape))
        ended.append((infos["episode_return"], infos["episode_return"].clone()))
        total = torch.zeros(B, env.num_agents)
    assert len(ended) == 2
    for handed_out, copy in ended:  # tensors handed out in infos never change afterwards
        assert torch.equal(handed_out, copy)
    assert not torch.equal(ended[0][1], ended[1][1])


def test_auto_reset_on_termination_reports_the_episode():
    """Balance ends when the line or the package touches the floor: agents all moving sideways drop it."""
    env = VmasTeamEnv("balance", num_envs=B, seed=0)
    env.reset(seed=0)
    total = torch.zeros(B, env.num_agents)
    length = torch.zeros(B, dtype=torch.long)
    checked = 0
    for _ in range(70):
        obs, rewards, terminated, truncated, infos = env.step(torch.full((B, env.num_agents), 6))
        total, length = total + rewards, length + 1
        assert not truncated.any()
        for b in torch.nonzero(terminated).flatten().tolist():
            assert torch.equal(infos["episode_return"][b], total[b])
            assert int(infos["episode_length"][b]) == int(length[b])
            assert torch.equal(rewards[b], torch.full((env.num_agents,), rewards[b, 0].item()))  # shared reward
            assert rewards[b, 0] < -5  # the fall penalty (-10) on the ending step
            checked += 1
        total[terminated], length[terminated] = 0.0, 0
    assert checked >= 2


def test_global_random_state_is_untouched():
    torch_state, np_state, py_state = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    env = VmasTeamEnv("navigation", num_envs=B, seed=0, max_steps=3)
    env.reset(seed=1)
    for _ in range(4):  # an auto-reset included
        env.step(torch.randint(0, 9, (B, env.num_agents), generator=torch.Generator().manual_seed(0)))
    env.branch([0, 1], 4)
    env.reset_blocks(3, 2)
    env.set_state(env.get_state())
    VmasTeamEnv("transport", num_envs=4, seed=0).reset_blocks(2, 2)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert random.getstate() == py_state


@pytest.mark.parametrize("scenario", ["navigation", "transport"])
def test_reset_blocks_starts_each_block_alike(scenario):
    env = VmasTeamEnv(scenario, num_envs=B, seed=0)
    assert env.can_branch == (scenario in BRANCHABLE_SCENARIOS)
    obs = env.reset_blocks(21, 4)
    for block in (obs[:4], obs[4:]):
        assert torch.equal(block, block[:1].expand_as(block))
    assert not torch.equal(obs[0], obs[4])
    assert torch.equal(VmasTeamEnv(scenario, num_envs=B, seed=7).reset_blocks(21, 4), obs)
    assert not torch.equal(env.reset_blocks(22, 4), obs)


def test_teams_follow_the_scenario_sides():
    assert VmasTeamEnv("football", num_envs=2, ai_red_agents=False).teams == (0, 0, 0, 1, 1, 1)
    assert VmasTeamEnv("transport", num_envs=2).teams == (0, 0, 0, 0)


def test_default_time_limits_are_benchmarl_s():
    assert VmasTeamEnv("navigation", num_envs=2).max_steps == 100
    assert VmasTeamEnv("football", num_envs=2).max_steps == 500
    assert VmasTeamEnv("navigation", num_envs=2, max_steps=7).max_steps == 7


def test_clear_errors():
    with pytest.raises(ValueError, match="'navigaton' is unknown: expected one of .*navigation"):
        VmasTeamEnv("navigaton", num_envs=2)
    with pytest.raises(ValueError, match="does not take .*n_agentz"):
        VmasTeamEnv("navigation", num_envs=2, n_agentz=3)
    with pytest.raises(ValueError, match=r"rejected its kwargs \{'n_agents': 1\}.*n_agents > 1"):
        VmasTeamEnv("balance", num_envs=2, n_agents=1)
    with pytest.raises(ValueError, match="continuous_actions"):
        VmasTeamEnv("navigation", num_envs=2, continuous_actions=True)
    with pytest.raises(ValueError, match="simple_tag.*different widths.*adversary_0"):
        VmasTeamEnv("simple_tag", num_envs=2)
    with pytest.raises(ValueError, match="max_steps=0"):
        VmasTeamEnv("navigation", num_envs=2, max_steps=0)
    transport = VmasTeamEnv("transport", num_envs=4)
    assert not transport.can_branch
    with pytest.raises(ValueError, match="'transport' does not support branch.*balance, navigation"):
        transport.branch([0, 1], 2)
    env = VmasTeamEnv("navigation", num_envs=4)
    with pytest.raises(ValueError, match=r"shape \(num_envs, num_agents\) = \(4, 4\), got \(4, 3\)"):
        env.step(torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"lie in \[0, 8\]"):
        env.step(torch.full((4, 4), 9))
    with pytest.raises(ValueError, match="group_size=3"):
        env.reset_blocks(0, 3)
    with pytest.raises(ValueError, match="len\\(src_idx\\) \\* group_size must equal num_envs=4"):
        env.branch([0, 1, 2], 2)
    with pytest.raises(ValueError, match="seed=-1"):
        env.reset(seed=-1)
    with pytest.raises(ValueError, match="lacks"):
        env.set_state({"adapter.obs": torch.zeros(4, 4, 18)})
