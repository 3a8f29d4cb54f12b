"""Scripted bots: interface, determinism, and win rates over 200 real matches of the vector env."""

import math

import pytest
import torch

from marl_grpo.agents import (
    BOT_NAMES,
    Bot,
    ChaserBot,
    ObsView,
    RandomBot,
    TeamBot,
    direction_to_action,
    make_bot,
)
from marl_grpo.envs import NUM_ACTIONS, SoccerConfig, SoccerVecEnv

NUM_MATCHES = 200


def play(blue: str, red: str, device: str, num_envs: int = NUM_MATCHES, blue_strength: float = 1.0,
         red_strength: float = 1.0, seed: int = 0, **kwargs):
    """Play one full match in each of `num_envs` envs on `device`; returns the final scores [B, 2]
    (blue, red).

    Also checks every action the bots take: shape [B, N], int64, within the action space.
    """
    env = SoccerVecEnv(num_envs=num_envs, device=device, **kwargs)
    config = env.config
    blue_bot = make_bot(blue, config, strength=blue_strength, seed=seed + 1, device=device)
    red_bot = make_bot(red, config, strength=red_strength, seed=seed + 2, device=device)
    n_blue = config.n_blue
    obs = env.reset(seed=seed)
    for _ in range(config.max_cycles):
        blue_actions, red_actions = blue_bot.act(obs), red_bot.act(obs)
        for actions in (blue_actions, red_actions):
            assert actions.shape == (num_envs, config.num_agents)
            assert actions.dtype == torch.int64
            assert int(actions.min()) >= 0 and int(actions.max()) < NUM_ACTIONS
        actions = torch.cat([blue_actions[:, :n_blue], red_actions[:, n_blue:]], 1)
        obs, _, terminated, truncated, infos = env.step(actions)
        assert not bool(terminated.any())
        if bool(truncated.any()):
            assert bool(truncated.all())  # every match starts together, so they end together
            return infos["final_score"].clone()
    raise AssertionError("the matches did not end at max_cycles")


def outcome(score: torch.Tensor) -> tuple[int, int, int]:
    """(blue wins, red wins, draws) from final scores [B, 2]."""
    wins = int((score[:, 0] > score[:, 1]).sum())
    losses = int((score[:, 0] < score[:, 1]).sum())
    return wins, losses, score.shape[0] - wins - losses


# --------------------------------------------------------------------------- the direction helper
@pytest.mark.parametrize(
    "direction, action",
    [
        ((1.0, 0.0), 1),     # E, towards the opponent goal
        ((1.0, 1.0), 2),     # NE
        ((0.0, 1.0), 3),     # N
        ((-1.0, 1.0), 4),    # NW
        ((-1.0, 0.0), 5),    # W
        ((-1.0, -0.0), 5),   # W from below the axis too (atan2 gives -pi)
        ((-1.0, -1.0), 6),   # SW
        ((0.0, -1.0), 7),    # S
        ((1.0, -1.0), 8),    # SE
        ((1.0, 0.4), 1),     # 21.8 degrees: still E
        ((1.0, 0.42), 2),    # 22.8 degrees: NE
        ((-0.2, -1.0), 7),   # 101 degrees clockwise: S
    ],
)
def test_direction_to_action_picks_the_nearest_compass_move(direction, action):
    assert direction_to_action(torch.tensor(direction)).item() == action


def test_direction_to_action_stays_within_the_radius_and_keeps_the_shape():
    directions = torch.tensor([[[0.01, 0.0], [0.0, -0.05]], [[0.0, 0.0], [0.3, 0.3]]])
    actions = direction_to_action(directions, stay_radius=0.02)
    assert actions.dtype == torch.int64
    assert actions.tolist() == [[0, 7], [0, 2]]
    # radius 0: any nonzero direction moves, a zero one stays
    assert direction_to_action(torch.tensor([[1e-6, 0.0], [0.0, 0.0]])).tolist() == [1, 0]


# --------------------------------------------------------------------------- interface and errors
def test_make_bot_builds_each_bot_and_rejects_unknown_names():
    config = SoccerConfig(team_size=2)
    kinds = {"random": RandomBot, "chaser": ChaserBot, "team": TeamBot}
    assert set(BOT_NAMES) == set(kinds)
    for name, cls in kinds.items():
        bot = make_bot(name, config, strength=0.3, seed=7)
        assert type(bot) is cls and isinstance(bot, Bot)
        assert bot.strength == 0.3 and bot.seed == 7
    with pytest.raises(ValueError, match="unknown bot 'keeper'.*'random', 'chaser', 'team'"):
        make_bot("keeper", config)


@pytest.mark.parametrize("strength", [-0.1, 1.5, float("nan"), "high", True])
@pytest.mark.parametrize("name", BOT_NAMES)
def test_strength_outside_0_1_raises_naming_the_value(name, strength):
    with pytest.raises(ValueError, match=f"strength={strength!r}"):
        make_bot(name, SoccerConfig(team_size=2), strength=strength)


def test_obs_of_the_wrong_width_raises():
    bot = TeamBot(SoccerConfig(team_size=2))
    with pytest.raises(ValueError, match="obs_dim=35"):
        bot.act(torch.zeros(4, 4, 46))


@pytest.mark.parametrize("name", BOT_NAMES)
@pytest.mark.parametrize("sizes", [(1, 1), (2, 2), (2, 3), (5, 5), (11, 11)])
def test_actions_have_the_shape_of_the_obs_and_lie_in_the_action_space(name, sizes, device):
    env = SoccerVecEnv(num_envs=8, device=device, blue_size=sizes[0], red_size=sizes[1])
    bot = make_bot(name, env.config, strength=0.5, device=device)
    obs = env.reset(seed=3)
    for _ in range(20):
        actions = bot.act(obs)
        assert actions.shape == (8, sum(sizes)) and actions.dtype == torch.int64
        assert int(actions.min()) >= 0 and int(actions.max()) < NUM_ACTIONS
        obs, *_ = env.step(actions)
    # a single match's [N, D] (as the PettingZoo env gives, stacked) works too
    assert bot.act(obs[0]).shape == (sum(sizes),)


def test_obs_view_reads_positions_in_each_agents_mirrored_frame(device):
    env = SoccerVecEnv(num_envs=3, device=device, blue_size=2, red_size=3)
    obs = env.reset(seed=1)
    for _ in range(25):  # get things moving
        obs, *_ = env.step(TeamBot(env.config, device=device).act(obs))
    config, N = env.config, env.config.num_agents
    state = env.state()  # world frame, in half lengths: x [N], y [N], vx, vy, ball x, y, ...
    world = torch.stack([state[:, :N], state[:, N:2 * N]], -1)  # [B, N, 2]
    ball = state[:, 4 * N:4 * N + 2]
    sign = torch.tensor([1.0] * config.n_blue + [-1.0] * config.n_red, device=device)[None, :, None]
    view = ObsView.parse(obs, config)
    torch.testing.assert_close(view.pos, world * sign, atol=1e-5, rtol=0)
    torch.testing.assert_close(view.ball, ball[:, None, :] * sign, atol=1e-5, rtol=0)
    # red_0 (agent 2) sees red_1 and red_2 as its teammates, blue_1 sees blue_0 and a missing one
    torch.testing.assert_close(view.mates[:, 2], -world[:, 3:5], atol=1e-5, rtol=0)
    assert view.mates_present[0, 1].tolist() == [True, False]
    assert view.slot[0].tolist() == [0, 1, 0, 1, 2]
    assert view.mate_slots[0, 3].tolist() == [0, 2]


# --------------------------------------------------------------------------- determinism and noise
@pytest.mark.parametrize("name", BOT_NAMES)
@pytest.mark.parametrize("strength", [1.0, 0.4])
def test_a_fixed_seed_gives_the_same_actions(name, strength, device):
    env = SoccerVecEnv(num_envs=16, device=device, team_size=3)

    def rollout(seed):
        bot = make_bot(name, env.config, strength=strength, seed=seed, device=device)
        obs = env.reset(seed=5)
        taken = []
        for _ in range(40):
            actions = bot.act(obs)
            taken.append(actions)
            obs, *_ = env.step(actions)
        return torch.stack(taken)

    first = rollout(seed=11)
    assert torch.equal(first, rollout(seed=11))
    if name == "random" or strength < 1.0:
        assert not torch.equal(first, rollout(seed=12))
    else:  # the noiseless playing bots use no randomness at all
        assert torch.equal(first, rollout(seed=12))


def test_bots_draw_from_their_own_generator_not_the_global_one(device):
    obs = SoccerVecEnv(num_envs=4, device=device).reset(seed=0)
    bot_a, bot_b = RandomBot(SoccerConfig(), seed=3, device=device), RandomBot(SoccerConfig(), seed=3, device=device)
    torch.manual_seed(0)
    first = bot_a.act(obs)
    torch.manual_seed(123)
    assert torch.equal(first, bot_b.act(obs))


def test_strength_sets_the_share_of_random_and_repeated_actions(device):
    """With strength s, about (1 - s) / 2 of the actions are random and (1 - s) / 2 repeats."""
    config = SoccerConfig(team_size=2)
    env = SoccerVecEnv(num_envs=500, device=device, team_size=2)
    obs = env.reset(seed=0)
    for _ in range(30):
        obs, *_ = env.step(TeamBot(config).act(obs))
    best = TeamBot(config).act(obs)
    for strength in (0.0, 0.5):
        # the bot's draws stay on its CPU generator (actions come back on the observations' device):
        # the same draws on every device, as the bounds below are only ~2.5 standard errors wide
        bot = TeamBot(config, strength=strength, seed=1)
        bot.previous = torch.full_like(best, 9)  # kick: what TeamBot picks here only by chance
        actions = bot.act(obs)
        mask = best != 9
        assert mask.float().mean() > 0.8
        repeated = (actions[mask] == 9).float().mean().item()
        kept = (actions[mask] == best[mask]).float().mean().item()
        noise = 1.0 - strength
        # a random action is 9 or the bot's own choice with probability 1 / NUM_ACTIONS each
        assert repeated == pytest.approx(noise / 2 * (1 + 1 / NUM_ACTIONS), abs=0.03)
        assert kept == pytest.approx(1.0 - noise + noise / 2 / NUM_ACTIONS, abs=0.03)
        assert torch.equal(bot.previous, actions)
    bot.reset()
    assert bot.previous is None
    assert torch.equal(TeamBot(config, strength=1.0).act(obs), best)


# --------------------------------------------------------------------------- play: 200 matches each
def test_team_bot_beats_random_and_scores_goals(device):
    score = play("team", "random", device, team_size=2)
    wins, losses, _ = outcome(score)
    assert wins >= 0.9 * NUM_MATCHES, (wins, losses)
    assert score[:, 0].float().mean() >= 4.0  # goals per match for TeamBot
    assert score[:, 1].float().mean() <= 0.3


def test_chaser_against_itself_is_even(device):
    wins, losses, _ = outcome(play("chaser", "chaser", device, team_size=2))
    decided = wins + losses
    assert decided >= NUM_MATCHES // 2
    assert 0.35 <= wins / decided <= 0.65, (wins, losses)


def test_team_bot_beats_chaser(device):
    wins, losses, _ = outcome(play("team", "chaser", device, team_size=2))
    assert wins >= 2 * losses, (wins, losses)


def test_full_strength_beats_zero_strength(device):
    wins, losses, _ = outcome(play("team", "team", device, blue_strength=1.0, red_strength=0.0, team_size=2))
    assert wins >= 0.9 * NUM_MATCHES and losses <= 0.02 * NUM_MATCHES, (wins, losses)


@pytest.mark.parametrize(
    "sizes", [{"team_size": 1}, {"team_size": 5}, {"blue_size": 2, "red_size": 3}, {"blue_size": 3, "red_size": 2}]
)
def test_team_bot_beats_random_at_other_team_sizes(sizes, device):
    score = play("team", "random", device, num_envs=50, **sizes)
    wins, losses, _ = outcome(score)
    assert wins >= 45 and losses == 0, (wins, losses)
    assert math.isfinite(score.float().mean().item())


def test_compiled_bots_take_the_eager_actions_over_whole_matches():
    """`compile=True` fuses `decide` with torch.compile (dynamic batch size): the same actions as
    eager play, move by move, for both playing bots over whole matches (goals, kicks, restarts),
    on the full batch, on a team's rows and on an odd-sized subset (one graph for all sizes)."""
    env = SoccerVecEnv(num_envs=48, team_size=3, max_cycles=120)
    config, nb = env.config, env.config.n_blue
    pairs = [(make_bot(name, config, strength=0.7, seed=5, compile=True), make_bot(name, config, strength=0.7, seed=5))
             for name in ("chaser", "team")]
    assert all(c.compiled and not e.compiled for c, e in pairs)
    blue, red = make_bot("team", config, seed=1), make_bot("chaser", config, seed=2)  # they play the matches
    obs, moves = env.reset(seed=3), 0
    for step in range(config.max_cycles):
        for compiled, eager in pairs:
            rows = obs[: 17 + step % 20, nb:] if step % 3 else obs
            got, want = compiled.act(rows), eager.act(rows)
            assert torch.equal(got, want), f"{type(eager).__name__} differs at step {step}"
            moves += got.numel()
        obs, _, _, _, infos = env.step(torch.cat([blue.act(obs[:, :nb]), red.act(obs[:, nb:])], 1))
    assert moves > 20_000 and infos["final_score"].sum() > 10  # whole matches, with goals
    assert not make_bot("random", config, compile=True).compiled  # nothing to fuse


def test_a_bot_whose_compile_fails_warns_and_plays_eagerly(monkeypatch):
    import marl_grpo.envs.bots as bots

    def broken(cls):
        def fail(*args):
            raise RuntimeError("no C++ compiler")
        return fail

    monkeypatch.setattr(bots, "_compiled", broken)
    env = SoccerVecEnv(num_envs=8, team_size=2)
    obs = env.reset(seed=0)
    bot, eager = make_bot("team", env.config, seed=1, compile=True), make_bot("team", env.config, seed=1)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        got = bot.act(obs)
    assert not bot.compiled and torch.equal(got, eager.act(obs))
