"""An LLM checkpoint plays whole matches: `LLMPlayer`, `marl-grpo eval`, `tournament`, `watch`, `play`."""

import dataclasses
import math
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import pytest
import torch

pytest.importorskip("transformers")

from marl_grpo.agents import make_bot  # noqa: E402
from marl_grpo.agents.checkpoint import write_policy  # noqa: E402
from marl_grpo.agents.llm_text import ACTION_WORDS, parse_answers  # noqa: E402
from marl_grpo.cli import main  # noqa: E402
from marl_grpo.envs import SoccerConfig, SoccerVecEnv  # noqa: E402
from marl_grpo.llm import LLMConfig, preset, train_llm  # noqa: E402
from marl_grpo.llm.matches import bootstrap_mean_interval, evaluate_lineup, wilson_interval  # noqa: E402
from marl_grpo.llm.player import is_llm_checkpoint, load_llm_player, parse_players, read_llm_config  # noqa: E402
from marl_grpo.play import EvalConfig, HumanMatch, PlayConfig, WatchConfig, run_eval, run_watch  # noqa: E402
from marl_grpo.run.checkpoint import atomic_directory  # noqa: E402
from marl_grpo.tools.tournament import TournamentConfig, run_tournament  # noqa: E402

MAX_CYCLES = 18
"""match length of the tiny run: short matches keep the closed loops fast"""


@pytest.fixture(scope="module")
def llm_ckpt(tmp_path_factory) -> str:
    """A tiny LLM trained for one iteration (`--preset test`), 2v2 matches of `MAX_CYCLES` steps,
    one-token answers (so that a fresh model already answers some valid words)."""
    log_dir = tmp_path_factory.mktemp("llm-play")
    train_llm(LLMConfig(**{**preset("test").to_dict(), "log_dir": str(log_dir), "total_iterations": 1,
                           "eval_every": 0, "max_cycles": MAX_CYCLES, "max_new_tokens": 1, "horizon": 3}))
    return str(log_dir / "llm-test" / "checkpoint")


@pytest.fixture(scope="module")
def soccer_ckpt(tmp_path_factory) -> str:
    from marl_grpo.agents import SoccerPolicy

    config = SoccerConfig(team_size=2, max_cycles=MAX_CYCLES)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("soccer") / "checkpoint"
    with atomic_directory(folder) as tmp:
        write_policy(tmp, SoccerPolicy(config, hidden=8), config, {})
    return str(folder)


class CountingGenerate:
    """Wraps an agent's `generate`: records the number of prompts of every call."""

    def __init__(self, agent):
        self.agent, self.inner, self.calls = agent, agent.generate, []
        agent.generate = self

    def __call__(self, prompts, *args, **kwargs):
        self.calls.append(len(prompts))
        return self.inner(prompts, *args, **kwargs)


# --------------------------------------------------------------------------- the player
@pytest.mark.parametrize("decide_every", [1, 4, 5])
def test_player_holds_its_answers_for_h_steps_with_one_batched_call_per_decision(llm_ckpt, decide_every):
    config = SoccerConfig(team_size=2, max_cycles=MAX_CYCLES)
    player = load_llm_player(llm_ckpt, torch.device("cpu"), config, decide_every=decide_every, seed=3)
    calls = CountingGenerate(player.agent)
    B, seats = 3, [0, 1]
    env = SoccerVecEnv(num_envs=B, device="cpu", team_size=2, max_cycles=MAX_CYCLES)
    bot = make_bot("team", env.config, seed=0)
    obs = env.reset(seed=0)
    played, parsed = [], []
    for step in range(MAX_CYCLES):
        actions = bot.act(obs)
        actions[:, seats] = player.act(obs[:, seats])
        played.append(actions[:, seats].clone())
        if step % decide_every == 0:
            index, valid = parse_answers(player.last_texts, ACTION_WORDS)
            parsed.append(torch.where(valid, index, 0).view(B, len(seats)))
        obs = env.step(actions)[0]
    assert calls.calls == [B * len(seats)] * math.ceil(MAX_CYCLES / decide_every)
    for step, actions in enumerate(played):  # the parsed answer of the last decision, held in between
        assert torch.equal(actions, parsed[step // decide_every]), step
    assert player.decisions == B * len(seats) * len(calls.calls)
    invalid = sum(int((~parse_answers([t], ACTION_WORDS)[1]).sum()) for t in player.last_texts)
    assert 0 <= invalid <= player.invalid


def test_player_restarts_with_reset_and_greedy_is_repeatable(llm_ckpt):
    config = SoccerConfig(team_size=2, max_cycles=MAX_CYCLES)
    player = load_llm_player(llm_ckpt, torch.device("cpu"), config, decide_every=10, greedy=True)
    calls = CountingGenerate(player.agent)
    env = SoccerVecEnv(num_envs=2, device="cpu", team_size=2, max_cycles=MAX_CYCLES)
    obs = env.reset(seed=1)
    first = player.act(obs[:, :1])
    player.act(obs[:, :1])
    player.reset()  # a new match decides at once
    assert torch.equal(player.act(obs[:, :1]), first)
    assert calls.calls == [2, 2]
    with pytest.raises(ValueError, match="decide_every=0 is invalid"):
        load_llm_player(llm_ckpt, torch.device("cpu"), config, decide_every=0)


def test_the_player_answers_in_the_checkpoints_own_format(tmp_path):
    """A run trained with --answer-format choice plays under the same constraint: every answer is an
    action word, where the same model under the strict word format gives malformed ones."""
    train_llm(LLMConfig(**{**preset("test").to_dict(), "log_dir": str(tmp_path), "total_iterations": 1,
                           "eval_every": 0, "max_cycles": MAX_CYCLES, "max_new_tokens": 2,
                           "answer_format": "choice"}))
    ckpt = str(tmp_path / "llm-test" / "checkpoint")
    kwargs = {"team_size": 2, "max_cycles": MAX_CYCLES}
    player = load_llm_player(ckpt, torch.device("cpu"), SoccerConfig(**kwargs), decide_every=3)
    assert player.text_format.answer_format == "choice"
    result = evaluate_lineup(player, [0, 1], kwargs, matches=4)
    assert result["llm/invalid_frac"] == 0.0 and result["llm/decisions"] == 8 * math.ceil(MAX_CYCLES / 3)
    player.text_format = dataclasses.replace(player.text_format, answer_format="word")
    assert evaluate_lineup(player, [0, 1], kwargs, matches=4)["llm/invalid_frac"] > 0.0


def test_checkpoint_config_and_seats(llm_ckpt, soccer_ckpt):
    assert is_llm_checkpoint(llm_ckpt) and not is_llm_checkpoint(soccer_ckpt)
    cfg = read_llm_config(llm_ckpt)
    assert (cfg.max_cycles, cfg.horizon, cfg.max_new_tokens) == (MAX_CYCLES, 3, 1)
    config = SoccerConfig(team_size=3)
    assert parse_players("all-blue", config) == [0, 1, 2]
    assert parse_players("blue_2,blue_0", config) == [0, 2]
    for bad in ("red_0", "all-red", "blue_3", "blue_0,blue_0", ""):
        with pytest.raises(ValueError, match=f"--llm-players '{bad}' is invalid here: expected all-blue or "
                                             "comma-separated blue players \\(blue_0, blue_1, blue_2\\)"):
            parse_players(bad, config)


# --------------------------------------------------------------------------- intervals
def test_wilson_interval_matches_hand_computed_values():
    # 5 of 10: centre 0.5, half 1.96 / 1.38415 * sqrt(0.025 + 0.0096037) = 0.26340
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    # 0 of 10: upper bound z^2 / (n + z^2) = 3.84146 / 13.84146
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)
    with pytest.raises(ValueError, match="trials"):
        wilson_interval(3, 2)
    low, high = bootstrap_mean_interval([1.0] * 5 + [-1.0] * 5, seed=0)
    assert low < 0.0 < high and bootstrap_mean_interval([2.0] * 4, seed=0) == (2.0, 2.0)


# --------------------------------------------------------------------------- eval
def test_eval_reports_results_intervals_and_decisions(llm_ckpt):
    matches = 4
    result = run_eval(EvalConfig(llm_ckpt, matches=matches, llm_players="all-blue", decide_every=4, device="cpu"))
    counts = [result[f"eval/{k}"] for k in ("wins", "draws", "losses")]
    assert sum(counts) == matches
    for key, count in zip(("win", "draw", "loss"), counts):
        assert result[f"eval/{key}_rate"] == count / matches
        assert (result[f"eval/{key}_rate_low"], result[f"eval/{key}_rate_high"]) == pytest.approx(
            wilson_interval(int(count), matches))
    assert result["eval/goal_diff_low"] <= result["eval/goal_diff"] <= result["eval/goal_diff_high"]
    assert result["llm/generate_calls"] == math.ceil(MAX_CYCLES / 4)
    assert result["llm/decisions"] == result["llm/generate_calls"] * matches * 2
    assert result["llm/decisions_per_s"] > 0 and 0.0 <= result["llm/invalid_frac"] <= 1.0

    # the baseline: the same line-up with the teammates bot in the LLM's seat, no model
    base = run_eval(EvalConfig(llm_ckpt, matches=matches, baseline=True, device="cpu"))
    assert "llm/decisions" not in base
    direct = evaluate_lineup(None, [0], {"team_size": 2, "max_cycles": MAX_CYCLES}, matches=matches)
    assert {k: v for k, v in base.items() if k != "eval/seconds"} == {
        k: v for k, v in direct.items() if k != "eval/seconds"}


def test_evaluate_lineup_makes_one_call_per_decision_step_over_all_matches_and_seats(llm_ckpt):
    kwargs = {"team_size": 2, "max_cycles": MAX_CYCLES}
    player = load_llm_player(llm_ckpt, torch.device("cpu"), SoccerConfig(**kwargs), decide_every=2)
    calls = CountingGenerate(player.agent)
    with_llm = evaluate_lineup(player, [0, 1], kwargs, matches=6, seed=5)
    base = evaluate_lineup(None, [0, 1], kwargs, matches=6, seed=5)
    assert calls.calls == [12] * math.ceil(MAX_CYCLES / 2)
    assert with_llm["llm/decisions"] == 12 * len(calls.calls)
    assert "llm/decisions" not in base


def test_eval_cli_and_bad_combinations(llm_ckpt, soccer_ckpt):
    main(["eval", llm_ckpt, "--matches", "2", "--device", "cpu", "--deterministic"])
    with pytest.raises(SystemExit, match="marl-grpo eval: --llm-players --decide-every are for an LLM checkpoint"):
        main(["eval", soccer_ckpt, "--llm-players", "blue_0", "--decide-every", "2"])
    with pytest.raises(SystemExit, match="--baseline is for an LLM checkpoint"):
        main(["eval", soccer_ckpt, "--baseline"])
    with pytest.raises(SystemExit, match="--llm-players 'red_0' is invalid here"):
        main(["eval", llm_ckpt, "--llm-players", "red_0"])
    with pytest.raises(SystemExit, match="teammates='nobody' is invalid"):
        main(["eval", llm_ckpt, "--teammates", "nobody"])
    with pytest.raises(SystemExit, match="--baseline plays no LLM"):
        main(["eval", llm_ckpt, "--baseline", "--decide-every", "2"])
    with pytest.raises(SystemExit, match="decide_every=0 is invalid"):
        main(["eval", llm_ckpt, "--decide-every", "0", "--matches", "2"])


# --------------------------------------------------------------------------- tournament, watch, play
def test_an_llm_checkpoint_plays_in_a_tournament(llm_ckpt, soccer_ckpt, tmp_path):
    result = run_tournament(TournamentConfig(paths=[llm_ckpt, soccer_ckpt], bots="random", matches=2, bootstrap=0,
                                             out=str(tmp_path / "t"), progress=False, device="cpu"))
    assert result["names"] == [llm_ckpt, soccer_ckpt, "random"]
    assert result["games"][0].sum() == 4  # 2 matches against each of the two others
    assert result["env"] == {"team_size": 2, "max_cycles": MAX_CYCLES}
    with pytest.raises(SystemExit, match="--decide-every .* no entrant is one"):
        main(["tournament", soccer_ckpt, "--bots", "random", "--decide-every", "2", "--out", str(tmp_path / "u")])


def test_watch_records_an_llm_against_an_llm_and_a_soccer_checkpoint(llm_ckpt, soccer_ckpt, tmp_path):
    path = run_watch(WatchConfig(llm_ckpt, opponent=llm_ckpt, record=str(tmp_path / "llm.gif"), decide_every=6))
    assert path.is_file() and path.stat().st_size > 0
    path = run_watch(WatchConfig(soccer_ckpt, opponent=llm_ckpt, record=str(tmp_path / "soccer.gif")))
    assert path.is_file()
    with pytest.raises(ValueError, match="--llm-players is for an LLM checkpoint"):
        run_watch(WatchConfig(soccer_ckpt, llm_players="blue_0", record=str(tmp_path / "x.gif")))
    with pytest.raises(ValueError, match="--decide-every is for LLM checkpoints"):
        run_watch(WatchConfig(soccer_ckpt, decide_every=2, record=str(tmp_path / "x.gif")))


def test_play_with_llm_teammates_and_an_llm_opponent(llm_ckpt):
    match = HumanMatch(PlayConfig(llm_ckpt, player="blue_1", opponent=llm_ckpt, decide_every=2))
    opponent, mates = match.llm_players  # the opponent is built first
    mate_calls, opponent_calls = CountingGenerate(mates.agent), CountingGenerate(opponent.agent)
    actions = [match.step({"right"})[0] for _ in range(5)]
    assert actions == [1] * 5  # the person's keys drive blue_1
    assert mate_calls.calls == [1] * 3 and opponent_calls.calls == [2] * 3  # blue_0 alone; both reds
    with pytest.raises(ValueError, match="--decide-every is for LLM checkpoints"):
        HumanMatch(PlayConfig(llm_ckpt.replace("llm-test", "nowhere"), decide_every=2))


# --------------------------------------------------------------------------- --state-source self
class KickingAgent:
    """A stand-in for `LLMAgent` that answers kick to every prompt, and counts its calls."""

    device = torch.device("cpu")

    def __init__(self):
        self.calls = []

    def uses_chat_template(self, text_format):
        return False

    def generate(self, prompts, num_samples=1, **kwargs):
        self.calls.append(len(prompts))
        return type("Done", (), {"texts": ["kick"] * len(prompts)})()


def test_self_play_pool_seats_play_the_agents_answers():
    from marl_grpo.envs import KICK_ACTION
    from marl_grpo.llm.build import make_task

    cfg = LLMConfig(**{**preset("test").to_dict(), "state_source": "self", "llm_players": "blue_1", "stride": 5,
                       "horizon": 2, "max_cycles": MAX_CYCLES})
    agent = KickingAgent()
    task = make_task(cfg, 2, 2, seed=0, device=torch.device("cpu"), agent=agent)
    env, played = task.source.env, []
    step = env.step
    env.step = lambda actions: (played.append(actions.clone()), step(actions))[1]
    task.draw()
    B = env.num_envs
    assert agent.calls == [B] * 3  # steps 0, 2, 4 of the stride: one batched call over the pool's B matches
    played = torch.stack(played)  # [stride, B, N]
    assert (played[:, :, 1] == KICK_ACTION).all()
    assert not (played[:, :, [0, 2, 3]] == KICK_ACTION).all()  # the bots play the others
    # a pool without self-play (or the held-out set, built without the agent) is played by bots only
    bots = make_task(LLMConfig(**{**cfg.to_dict(), "state_source": "bots"}), 2, 2, seed=0,
                     device=torch.device("cpu"), agent=agent)
    bots.draw()
    assert bots.source.player is None and agent.calls == [B] * 3
    with pytest.raises(ValueError, match="state_source='self' needs task='soccer'"):
        LLMConfig(**{**cfg.to_dict(), "task": "direction"})


def test_self_play_pool_resumes_mid_hold_exactly():
    from marl_grpo.agents.llm import LLMAgent
    from marl_grpo.llm.build import make_task

    # choice: every sampled answer is a valid action, so another sampling stream plays other moves
    cfg = LLMConfig(**{**preset("test").to_dict(), "state_source": "self", "stride": 2, "horizon": 3,
                       "max_new_tokens": 1, "answer_format": "choice"})
    agent = LLMAgent.tiny(seed=0, device="cpu", hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    task = make_task(cfg, 2, 2, seed=0, device=torch.device("cpu"), agent=agent)
    task.draw()  # 2 steps into a hold of 3
    state = task.state_dict()
    first = [task.draw().prompts for _ in range(2)]
    other = make_task(cfg, 2, 2, seed=7, device=torch.device("cpu"), agent=agent)
    other.load_state_dict(state)
    assert [other.draw().prompts for _ in range(2)] == first


def test_training_with_state_source_self_lets_the_llm_play_the_pool(tmp_path, monkeypatch):
    from marl_grpo.agents.llm_player import LLMPlayer

    decisions = []
    decide = LLMPlayer.decide
    monkeypatch.setattr(LLMPlayer, "decide", lambda self, obs: (decisions.append(obs.shape[:2]), decide(self, obs))[1])
    cfg = LLMConfig(**{**preset("test").to_dict(), "log_dir": str(tmp_path), "total_iterations": 2, "eval_every": 0,
                       "save_every": 0, "state_source": "self", "stride": 4, "horizon": 2, "max_new_tokens": 1})
    train_llm(cfg)
    copies = cfg.group_size + len(ACTION_WORDS)
    assert decisions == [(cfg.prompts_per_step * copies, 1)] * 4  # 2 iterations x 4 steps / H = 2, blue_0 alone
