"""The self-play league: snapshots, opponent sampling, fair groups, Elo, exact resume, bad input."""

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from marl_grpo.agents.checkpoint import POLICY_FILE, load_policy
from marl_grpo.cli import main
from marl_grpo.envs import SoccerVecEnv
from marl_grpo.rl import preset
from marl_grpo.rl.league import LATEST, League, expected_score, parse_anchors, pfsp_weights
from marl_grpo.rl.train import SoccerTrainer
from marl_grpo.run.checkpoint import load_trainer_state
from marl_grpo.run.files import CHECKPOINT_DIR, LEAGUE_DIR

TINY = ["train", "--preset", "tiny", "--max-cycles", "16", "--opponent", "league", "--num-envs", "8"]  # G = 4


def _trainer(tmp_path: Path, **changes) -> SoccerTrainer:
    settings = {"max_cycles": 16, "opponent": "league", "num_envs": 16, "group_size": 4, **changes}
    cfg = dataclasses.replace(preset("tiny"), log_dir=str(tmp_path), **settings)
    return SoccerTrainer(cfg, torch.device("cpu"), None)


def test_snapshots_are_written_at_their_iterations_and_capped(tmp_path):
    main([*TINY, "--log-dir", str(tmp_path), "--total-env-steps", str(7 * 8 * 8), "--league-snapshot-every", "2",
          "--league-size", "2"])
    league = tmp_path / "tiny" / LEAGUE_DIR
    assert sorted(p.name for p in league.iterdir()) == ["snapshot-000004", "snapshot-000006"]
    state = load_trainer_state(tmp_path / "tiny" / CHECKPOINT_DIR)["trainer"]["league"]
    assert [s["iteration"] for s in state["snapshots"]] == [4, 6]
    assert state["order"] == ["team", "chaser", "snapshot-000004", "snapshot-000006"]
    # a snapshot is a checkpoint folder like any other (eval, watch and tournament read it)
    policy, meta = load_policy(league / "snapshot-000006")
    assert meta["train"]["league_iteration"] == 6
    saved = load_file(str(league / "snapshot-000006" / POLICY_FILE))
    assert all(torch.equal(saved[k], v) for k, v in state["snapshots"][1]["weights"].items())


def test_keep_every_keeps_the_files_of_every_kth_snapshot(tmp_path):
    main([*TINY, "--log-dir", str(tmp_path), "--total-env-steps", str(7 * 8 * 8), "--league-snapshot-every", "1",
          "--league-size", "1", "--league-keep-every", "3"])
    names = sorted(p.name for p in (tmp_path / "tiny" / LEAGUE_DIR).iterdir())
    assert names == ["snapshot-000003", "snapshot-000006", "snapshot-000007"]  # kept 3 and 6; 7 in the pool


def test_pfsp_prefers_the_opponents_we_lose_to():
    weights = pfsp_weights([1.0, 0.75, 0.5, 0.0, None], "pfsp")
    assert torch.allclose(weights, torch.tensor([0.0, 0.0625, 0.25, 1.0, 0.25], dtype=torch.float64))
    assert torch.equal(pfsp_weights([1.0, 0.2], "uniform"), torch.ones(2, dtype=torch.float64))
    assert torch.equal(pfsp_weights([1.0, 1.0], "pfsp"), torch.ones(2, dtype=torch.float64))  # never all zero


def test_the_league_draws_by_pfsp_from_a_results_table(tmp_path):
    trainer = _trainer(tmp_path, league_latest_ratio=0.0)
    league = trainer.league
    league.recent["team"].extend([0.0] * 10)  # we always lose to the team bot
    league.recent["chaser"].extend([1.0] * 9 + [0.0])  # and nearly always beat the chaser
    draws = league._draw(20000)
    share_team = float((draws == 0).double().mean())
    assert share_team == pytest.approx(1.0 / (1.0 + 0.01), abs=0.01)  # weights 1 and (1 - 0.9)^2
    league.cfg = dataclasses.replace(league.cfg, league_latest_ratio=0.25)
    assert float((league._draw(20000) == LATEST).double().mean()) == pytest.approx(0.25, abs=0.015)


def test_a_group_never_mixes_opponents_and_a_match_keeps_its_opponent(tmp_path):
    trainer = _trainer(tmp_path, league_latest_ratio=0.3, branch_horizon=8)
    league, collector, env = trainer.league, trainer.collector, trainer.env
    league.add_snapshot(0, {})
    previous = None
    for _ in range(6):
        t_before = None if previous is None else env.steps_in_match()
        segment = collector.collect(8)
        opponents = league.opponent.view(-1, 4)
        assert (opponents == opponents[:, :1]).all()  # every copy of a block faces one opponent
        if previous is not None:
            # a block whose match was under way kept its opponent; only fresh kickoffs draw again
            ongoing = (t_before[::4] >= 8)
            assert torch.equal(opponents[ongoing, 0], previous[ongoing])
        previous = opponents[:, 0].clone()
        # red is learned exactly where the learner plays itself
        latest = league.opponent == LATEST
        assert torch.equal(segment.learned[:, 2:], latest[:, None].expand(-1, 2))
        assert segment.learned[:, :2].all()
    assert {int(k) for k in league.opponent.unique()} - {LATEST}, "no pool member ever played"


def test_mlp_snapshots_act_together_as_each_would_alone(tmp_path):
    """The stacked forward of several snapshots gives each match the logits its own snapshot gives,
    and the red actions of a step come from one call for all of them."""
    trainer = _trainer(tmp_path, league_latest_ratio=0.0, league_anchors="team", num_envs=32)
    league, env = trainer.league, trainer.env
    for iteration in range(3):
        with torch.no_grad():  # three different snapshots
            for p in trainer.policy.parameters():
                p.add_(torch.randn_like(p) * 0.3)
        league.add_snapshot(iteration, {})
    league.opponent = torch.tensor([1, 2, 3, 0, 2, 2, 1, 3] * 4)  # uneven shares, the team bot too
    league._fresh = False
    env.reset(seed=3)
    league.start_segment(env, 0)  # no match kicked off during the last segment: the opponents stay
    assert league._stacked is not None and [m.name for m, _ in league._groups] == ["team"]
    obs = env.engine.observe()
    matches, logits = league._stacked.logits(obs[:, 2:])
    assert sorted(matches.tolist()) == [b for b in range(32) if b % 8 != 3]
    for match, row in zip(matches.tolist(), logits):
        alone = league.members[int(league.opponent[match])].actor(obs[match, 2:])
        torch.testing.assert_close(row, alone, rtol=1e-5, atol=1e-5)
    actions = torch.full((32, 4), -1)
    league.act(obs, actions)
    assert (actions[:, 2:] >= 0).all() and (actions[:, :2] == -1).all()


def test_the_update_batch_holds_only_the_learners_sequences(tmp_path):
    trainer = _trainer(tmp_path, league_latest_ratio=0.5)
    segment = trainer.collect()
    batch, _ = trainer.advantages(segment)
    latest_matches = int((trainer.league.opponent == LATEST).sum())
    assert batch.num_units == 16 * 2 + latest_matches * 2
    assert 0 < latest_matches < 16
    # the pool members' actions are in the segment, with no log-prob of the learner
    pool = (trainer.league.opponent != LATEST).nonzero().squeeze(1)
    assert (segment.logp[:, pool][:, :, 2:] == 0).all()


def test_elo_updates_by_hand(tmp_path):
    trainer = _trainer(tmp_path, league_elo_k=8.0)
    league = trainer.league
    league.ratings.update(learner=1300.0, team=1200.0, chaser=1100.0)
    league.pending = [(0, 1.0), (0, 0.5), (1, 0.0), (LATEST, 1.0)]
    scalars = league.end_iteration()
    learner, team, chaser = 1300.0, 1200.0, 1100.0
    for score in (1.0, 0.5):  # one match at a time, in order
        change = 8 * (score - 1 / (1 + 10 ** ((team - learner) / 400)))
        learner, team = learner + change, team - change
    change = 8 * (0.0 - 1 / (1 + 10 ** ((chaser - learner) / 400)))
    learner, chaser = learner + change, chaser - change
    assert expected_score(1300.0, 1200.0) == pytest.approx(0.6400649998)
    assert league.ratings["learner"] == pytest.approx(learner)
    assert league.ratings["team"] == pytest.approx(team) and league.ratings["chaser"] == pytest.approx(chaser)
    assert learner < 1300 and chaser > 1100  # a win, a draw and a loss, the loss against a weaker member
    assert scalars["league/win_rate_vs_pool"] == pytest.approx(1 / 3)
    assert scalars["league/win_rate_vs_latest"] == 1.0
    assert list(league.recent["team"]) == [1.0, 0.5] and list(league.recent["chaser"]) == [0.0]
    # a new snapshot starts at the learner's rating
    league.add_snapshot(5, {})
    assert league.ratings["snapshot-000005"] == league.ratings["learner"]


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_resume_is_exact_with_a_league_and_keeps_the_ratings(tmp_path, algo):
    args = [*TINY, "--algo", algo, "--no-anneal-lr", "--league-snapshot-every", "1", "--league-size", "2",
            "--league-latest-ratio", "0.3", "--league-sampling", "pfsp"]
    budget = 8 * 8
    main(args + ["--log-dir", str(tmp_path / "straight"), "--total-env-steps", str(5 * budget)])
    main(args + ["--log-dir", str(tmp_path / "halves"), "--total-env-steps", str(2 * budget)])
    main(args + ["--log-dir", str(tmp_path / "halves"), "--total-env-steps", str(5 * budget), "--resume"])
    straight, halves = (tmp_path / run / "tiny" / CHECKPOINT_DIR for run in ("straight", "halves"))
    weights, resumed = load_file(str(straight / POLICY_FILE)), load_file(str(halves / POLICY_FILE))
    assert all(torch.equal(weights[k], resumed[k]) for k in weights)
    leagues = [load_trainer_state(path)["trainer"]["league"] for path in (straight, halves)]
    assert leagues[0]["ratings"] == leagues[1]["ratings"]
    assert sum(len(r) for r in leagues[0]["recent"].values()) > 0  # pool matches were played and rated
    assert leagues[0]["recent"] == leagues[1]["recent"]
    assert leagues[0]["order"] == leagues[1]["order"] == ["team", "chaser", "snapshot-000004", "snapshot-000005"]


def test_bad_league_settings_are_refused_clearly(tmp_path):
    with pytest.raises(SystemExit, match="unknown bot 'keeper'"):
        main([*TINY, "--log-dir", str(tmp_path), "--league-anchors", "team,keeper"])
    with pytest.raises(SystemExit, match="league_size=0 is invalid"):
        main([*TINY, "--log-dir", str(tmp_path), "--league-size", "0"])
    with pytest.raises(SystemExit, match="strength of 'team' must be a number in"):
        main([*TINY, "--log-dir", str(tmp_path), "--league-anchors", "team:2"])
    with pytest.raises(SystemExit, match="league_sampling='best' is invalid"):
        main([*TINY, "--log-dir", str(tmp_path), "--league-sampling", "best"])
    assert parse_anchors("team, chaser:0.5,") == [("team", 1.0), ("chaser", 0.5)]


def test_the_anchor_ratio_gives_the_anchors_their_share(tmp_path):
    trainer = _trainer(tmp_path, league_latest_ratio=0.2, league_anchor_ratio=0.5, league_sampling="uniform")
    league = trainer.league
    draws = league._draw(20000)  # no snapshot yet: every non-latest draw is an anchor
    assert float((draws == LATEST).double().mean()) == pytest.approx(0.2, abs=0.015)
    for k in range(3):
        league.add_snapshot(k + 1, {})
    draws = league._draw(40000)
    anchors, snapshots = (draws >= 0) & (draws < 2), draws >= 2
    assert float(anchors.double().mean()) == pytest.approx(0.5, abs=0.015)
    assert float(snapshots.double().mean()) == pytest.approx(0.3, abs=0.015)
    with pytest.raises(ValueError, match="league_anchor_ratio=0.9 is invalid"):
        _trainer(tmp_path, league_latest_ratio=0.2, league_anchor_ratio=0.9)
