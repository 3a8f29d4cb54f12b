"""A team of LLM players (`--llm-players`): each plays its own completion in every branched copy,
the `branch+team` group baseline pools teammates, and the one-player default is unchanged."""

from types import SimpleNamespace

import pytest
import torch

from marl_grpo.advantages import group_advantages
from marl_grpo.agents.llm_text import ACTION_WORDS, parse_answers
from marl_grpo.cli import main
from marl_grpo.envs import NUM_ACTIONS, SoccerConfig
from marl_grpo.llm.config import LLMConfig
from marl_grpo.llm.tasks import PromptBatch, SoccerTask, answer_rewards, llm_player_indices, reward_components
from marl_grpo.llm.train import LLMTrainer


def _team_task(device: str, players: tuple[int, ...] = (0, 1), num_states: int = 2, group_size: int = 3,
               horizon: int = 3, seed: int = 4) -> SoccerTask:
    return SoccerTask(num_prompts=num_states, group_size=group_size, horizon=horizon, stride=7,
                      env_kwargs={"team_size": 2}, seed=seed, device=device, llm_players=players)


def _record_steps(task: SoccerTask) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Wrap the task's bot and env step: (the bots' actions, the actions stepped), [B, N] per step."""
    planned, stepped = [], []
    others, step = task.source.others, task.source.env.step

    def record_others(obs, bot):
        actions = others(obs, bot)
        planned.append(actions.clone())
        return actions

    def record_step(actions):
        stepped.append(actions.clone())
        return step(actions)

    task.source.others, task.source.env.step = record_others, record_step
    return planned, stepped


# --------------------------------------------------------------------------- players and copies


def test_every_llm_player_plays_its_own_completion(device):
    """In copy g every listed player steps the parsed action of its own completion g (a malformed
    one: stay) for all H steps; in table copy (k, a) player k plays a; bots play every other seat."""
    M, K, G, A, H = 2, 2, 3, NUM_ACTIONS, 3
    task = _team_task(device, num_states=M, group_size=G, horizon=H)
    batch = task.draw()
    assert len(batch.prompts) == M * K and batch.num_players == K
    assert batch.players.tolist() == [0, 1] * M
    assert torch.equal(batch.slots[0::2], batch.slots[1::2])  # the two players' prompts share a state
    obs = task.source.obs[batch.slots, batch.players]  # each prompt renders its own player's observation
    assert batch.prompts[0] != batch.prompts[1] and not torch.equal(obs[0], obs[1])

    words = [[[ACTION_WORDS[(1 + m + 3 * k + 2 * g) % A] for g in range(G)] for k in range(K)] for m in range(M)]
    words[1][0][2] = "nonsense"  # malformed: plays stay
    texts = [w for m in range(M) for k in range(K) for w in words[m][k]]
    expected, valid = parse_answers(texts, ACTION_WORDS)
    expected = expected.view(M, K, G)
    planned, stepped = _record_steps(task)
    answer_rewards(task, batch, texts, G, format_penalty=1.0)
    assert len(stepped) == H
    copies = G + K * A
    for bots, actions in zip(planned, stepped):
        bots, actions = bots.cpu().view(M, copies, -1), actions.cpu().view(M, copies, -1)
        want = bots.clone()
        want[:, :G, :K] = expected.transpose(1, 2)
        for k in range(K):
            want[:, G + k * A: G + (k + 1) * A, k] = torch.arange(A)
        assert torch.equal(actions, want)
    assert expected[1, 0, 2] == 0 and not valid[(1 * K + 0) * G + 2]


def test_each_player_is_scored_by_its_own_return_and_table(device):
    """A player's action table is its return with bots in every other seat, so a listed player whose
    completions are its teammate's bot actions scores exactly its table; the two rows differ."""
    M, K, G = 1, 2, NUM_ACTIONS
    task = _team_task(device, num_states=M, group_size=G, horizon=4, seed=6)
    batch = task.draw()
    returns, table = task.returns(batch, torch.arange(G).repeat(M * K, 1))
    assert returns.shape == (M * K, G) and table.shape == (M * K, NUM_ACTIONS)
    assert not torch.equal(table[0], table[1])
    # one LLM player: its G = A copies are exactly its table copies
    single = _team_task(device, players=(0,), num_states=M, group_size=G, horizon=4, seed=6)
    batch = single.draw()
    returns, table = single.returns(batch, torch.arange(G).repeat(M, 1))
    assert torch.equal(returns, table)


def test_the_source_matches_are_restored_after_team_branches(device):
    task = _team_task(device)
    batch = task.draw()
    snapshot = task.source.env.get_state()
    task.score(batch, torch.zeros(4, 3, dtype=torch.long), torch.ones(4, 3, dtype=torch.bool))
    after = task.source.env.get_state()
    assert all(torch.equal(after[k], snapshot[k]) for k in snapshot)


@pytest.mark.parametrize("balance", [True, False])
def test_states_are_distinct_matches(balance, device):
    task = SoccerTask(num_prompts=5, group_size=2, horizon=2, stride=3, env_kwargs={"team_size": 3}, seed=1,
                      device=device, balance=balance, llm_players=(3, 4, 5))
    batch = task.draw()
    states = batch.slots.view(5, 3)
    assert (states == states[:, :1]).all() and len(set(states[:, 0].tolist())) == 5
    assert batch.players.tolist() == [3, 4, 5] * 5


# --------------------------------------------------------------------------- group baselines


def _advantages(group_mode: str, task: SoccerTask, batch: PromptBatch, rewards: list[float]) -> torch.Tensor:
    """The trainer's advantages (`LLMTrainer.groups`, then `group_advantages` on the reward components)
    of task rewards `rewards` [P * G], every answer valid."""
    cfg = SimpleNamespace(group_mode=group_mode, group_size=task.group_size)
    groups = LLMTrainer.groups(SimpleNamespace(cfg=cfg, task=task), batch)
    task_rewards = torch.tensor(rewards)
    components, weights = reward_components(task_rewards, torch.ones(len(rewards), dtype=torch.bool), 1.0)
    return group_advantages(components, **groups, scale="group", components=True, reward_weights=weights)


def test_team_baseline_by_hand():
    """2 LLM players x G = 2 copies of one state, rewards blue_0 (1, 0) and blue_1 (0.5, 0.5).

    branch: blue_0's group (1, 0) has mean 0.5 and unbiased std sqrt(0.5); blue_1's is constant (0).
    branch+team: one group (1, 0, 0.5, 0.5), mean 0.5, unbiased std sqrt(0.5 / 3) = sqrt(1 / 6).
    """
    task = SoccerTask(num_prompts=1, group_size=2, horizon=1, stride=1, env_kwargs={"team_size": 2},
                      llm_players=(0, 1))
    batch = PromptBatch(["p0", "p1"], torch.tensor([0, 0]), torch.tensor([0, 1]), num_players=2)
    rewards = [1.0, 0.0, 0.5, 0.5]
    eps = 1e-4
    player = _advantages("branch", task, batch, rewards)
    torch.testing.assert_close(player, torch.tensor([0.5, -0.5, 0.0, 0.0]) / (0.5 ** 0.5 + eps))
    team = _advantages("branch+team", task, batch, rewards)
    torch.testing.assert_close(team, torch.tensor([0.5, -0.5, 0.0, 0.0]) / ((1 / 6) ** 0.5 + eps))
    assert team[2] == 0 and team[3] == 0  # at the team mean: no push, though its own group is constant


def test_team_groups_are_per_state_and_per_team():
    """Two states of blue_0, blue_1 and red_0: the teammates of one state and team share a group."""
    task = SoccerTask(num_prompts=2, group_size=2, horizon=1, stride=1, env_kwargs={"team_size": 2},
                      llm_players=(0, 1, 2))
    batch = PromptBatch(["p"] * 6, torch.tensor([4, 4, 4, 9, 9, 9]), torch.tensor([0, 1, 2] * 2), num_players=3)
    ids = task.team_group_ids(batch, 2)
    assert ids.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3]
    # red_0 alone in its team: its group is its own G copies, as in branch mode
    rewards = [1.0, 0.0, 0.3, 0.7, 0.2, 0.9] * 2
    team, player = _advantages("branch+team", task, batch, rewards), _advantages("branch", task, batch, rewards)
    assert torch.equal(team[4:6], player[4:6]) and not torch.allclose(team[:4], player[:4])


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("spec", ["blue_5", "red_0,green_1", "blue_0,blue_0", "all-green", ","])
def test_unknown_llm_players_are_one_clear_error(spec):
    with pytest.raises(ValueError, match=r"llm_players=.*blue_0, blue_1, red_0, red_1, or one of all-blue, all-red"):
        LLMConfig(llm_players=spec)


def test_llm_players_resolve_by_name():
    config = SoccerConfig(team_size=2)
    assert llm_player_indices("", config) is None
    assert llm_player_indices("all-blue", config) == (0, 1)
    assert llm_player_indices("all-red", config) == (2, 3)
    assert llm_player_indices(" blue_1, blue_0", config) == (0, 1)
    assert llm_player_indices("red_2", SoccerConfig(team_size=3)) == (5,)


def test_team_group_mode_needs_teammates():
    with pytest.raises(ValueError, match="branch\\+team.*fewer than two players of one team"):
        LLMConfig(group_mode="branch+team")
    with pytest.raises(ValueError, match="branch\\+team.*fewer than two players of one team"):
        LLMConfig(group_mode="branch+team", llm_players="blue_0,red_0")
    with pytest.raises(ValueError, match="group_mode='team'"):
        LLMConfig(group_mode="team", llm_players="all-blue")
    LLMConfig(group_mode="branch+team", llm_players="all-blue")


def test_cli_names_the_allowed_players(capsys):
    with pytest.raises(SystemExit) as err:
        main(["llm", "--preset", "test", "--llm-players", "blue_5"])
    message = str(err.value)
    assert message.startswith("marl-grpo llm: llm_players='blue_5' is invalid") and "\n" not in message
    assert "blue_0, blue_1, red_0, red_1" in message


# --------------------------------------------------------------------------- the default is unchanged


def test_one_player_default_is_unchanged(device):
    """Without `llm_players` the task draws and scores exactly as before teams existed (values
    recorded from the code before the change: seed 2, fixed answers)."""
    task = SoccerTask(num_prompts=3, group_size=4, horizon=4, stride=9, env_kwargs={"team_size": 2}, seed=2,
                      device=device)
    actions = torch.tensor([[0, 3, 5, 8], [1, 2, 4, 9], [7, 6, 0, 1]])
    want = [
        ([26, 21, 29], [3, 0, 3],
         [[0.044064, 0.0, 0.0, 0.948476], [1.0, 0.919012, 0.0, 0.029877], [0.0, 0.0, 0.020092, 1.0]],
         [[0.044064, 1.0, 0.463178, 0.0, 0.0, 0.0, 0.0, 0.271176, 0.948476, 0.044064],
          [0.029877, 1.0, 0.919012, 0.117635, 0.0, 0.0, 0.0, 0.0, 0.468687, 0.029877],
          [0.020092, 1.0, 0.541302, 0.0, 0.0, 0.0, 0.0, 0.0, 0.747465, 0.020092]]),
        ([19, 19, 38], [2, 1, 0],
         [[0.016547, 0.830257, 0.551881, 0.0], [0.789965, 0.168542, 0.0, 0.0], [0.0, 0.0, 0.021962, 0.0]],
         [[0.016547, 0.0, 0.162159, 0.830257, 1.0, 0.551881, 0.0, 0.0, 0.0, 0.016547],
          [0.0, 0.789965, 0.168542, 0.0, 0.0, 0.0, 0.0, 0.528053, 1.0, 0.0],
          [0.021962, 0.0, 0.223561, 0.852678, 1.0, 0.502254, 0.0, 0.0, 0.0, 0.021962]]),
    ]
    for slots, players, rewards, table in want:
        batch = task.draw()
        assert batch.num_players == 1
        assert batch.slots.tolist() == slots and batch.players.tolist() == players
        got_rewards, got_table = task.score(batch, actions, torch.ones(3, 4, dtype=torch.bool))
        torch.testing.assert_close(got_rewards.cpu(), torch.tensor(rewards), atol=1e-6, rtol=0)
        torch.testing.assert_close(got_table.cpu(), torch.tensor(table), atol=1e-6, rtol=0)
    cfg = SimpleNamespace(group_mode="branch", group_size=4)
    assert LLMTrainer.groups(SimpleNamespace(cfg=cfg, task=task), batch) == {"group_size": 4}


# --------------------------------------------------------------------------- a real run


def test_a_team_run_trains_on_pooled_groups(tmp_path, monkeypatch):
    """`marl-grpo llm --llm-players all-blue --group-mode branch+team`: every state prompts both blue
    players, and the advantages are those of the state's K x G completions pooled."""
    seen = []
    advantages = LLMTrainer.advantages

    def record(self, batch):
        update, stats = advantages(self, batch)
        seen.append((batch, update.advantages.cpu()))
        return update, stats

    monkeypatch.setattr(LLMTrainer, "advantages", record)
    main(["llm", "--preset", "test", "--llm-players", "all-blue", "--group-mode", "branch+team",
          "--log-dir", str(tmp_path), "--device", "cpu"])
    assert len(seen) == 2
    for batch, got in seen:
        P, K, G = 2, 2, 2
        assert batch.prompts.players.tolist() == [0, 1] * P and len(batch.completions.texts) == P * K * G
        components, weights = reward_components(batch.task_rewards, batch.valid, 1.0)
        want = group_advantages(components, group_ids=torch.arange(P).repeat_interleave(K * G), components=True,
                                reward_weights=weights)
        torch.testing.assert_close(got, want)
