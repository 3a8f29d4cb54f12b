"""The trainer on other envs (`--env vmas:<scenario>`, `--env pettingzoo:<module>:<function>`): the env
contract, checkpoints that name their env, evaluation on held-out seeds, exact resume, group modes
and bad input."""

import json

import pytest
import torch
from safetensors.torch import load_file

from marl_grpo.agents import SoccerPolicy
from marl_grpo.agents.checkpoint import POLICY_CONFIG_FILE, POLICY_FILE, load_policy
from marl_grpo.cli import main
from marl_grpo.envs import SoccerVecEnv
from marl_grpo.envs.team import TeamVecEnv, parse_env_kwargs, parse_env_spec
from marl_grpo.run.files import CHECKPOINT_DIR, RESULT_FILE

SPREAD = "pettingzoo:mpe2.simple_spread_v3:parallel_env"
PZ = ["train", "--env", SPREAD, "--env-kwargs", "N=2", "max_cycles=10", "--num-envs", "8", "--group-size", "4",
      "--hidden", "16", "--eval-matches", "6", "--no-progress"]
NAV = ["train", "--env", "vmas:navigation", "--env-kwargs", "n_agents=2", "--max-cycles", "12", "--num-envs", "8",
       "--branch-horizon", "4", "--hidden", "16", "--eval-matches", "4", "--no-progress"]


def test_the_soccer_env_meets_the_contract_and_blocks_start_alike():
    env = SoccerVecEnv(num_envs=6, team_size=2, max_cycles=20)
    assert isinstance(env, TeamVecEnv)
    assert env.teams == (0, 0, 1, 1) and env.num_actions == 10 and env.max_steps == 20 and env.can_branch
    obs = env.reset_blocks(5, 3)
    assert torch.equal(obs[0], obs[2]) and torch.equal(obs[3], obs[5]) and not torch.equal(obs[0], obs[3])
    assert not SoccerVecEnv(num_envs=2, opponent="team").can_branch


def test_specs_and_settings_are_parsed_or_refused_in_one_line():
    assert parse_env_spec("vmas:balance") == ("vmas", "balance")
    assert parse_env_spec(SPREAD) == ("pettingzoo", "mpe2.simple_spread_v3:parallel_env")
    assert parse_env_kwargs(["n_agents=3", "name=abc", "shape=(1, 2)"]) == {"n_agents": 3, "name": "abc",
                                                                             "shape": (1, 2)}
    for bad in ("vmas", "gym:CartPole-v1", "pettingzoo:mpe2.simple_spread_v3"):
        with pytest.raises(ValueError, match=f"env='{bad}' is invalid: expected one of soccer, vmas:<scenario>"):
            parse_env_spec(bad)
    with pytest.raises(ValueError, match="item 'n_agents' is invalid: expected key=value"):
        parse_env_kwargs(["n_agents"])


def test_a_plain_policy_round_trips_through_its_config():
    policy = SoccerPolicy(18, hidden=16, num_actions=5, device="cpu")
    assert policy(torch.zeros(3, 2, 18)).shape == (3, 2, 5)
    again = SoccerPolicy.from_config(policy.config_dict(), device="cpu")
    assert again.num_actions == 5 and again.obs_dim == 18 and again.plain
    with pytest.raises(ValueError, match="needs arch='mlp'"):
        SoccerPolicy(18, arch="entity", num_actions=5)


def test_a_pettingzoo_run_names_its_env_and_eval_replays_its_evaluation(tmp_path, capsys):
    main([*PZ, "--log-dir", str(tmp_path), "--name", "spread", "--group-mode", "episode",
          "--total-env-steps", str(3 * 8 * 10), "--eval-every", "1"])
    folder = tmp_path / "spread" / CHECKPOINT_DIR
    meta = json.loads((folder / POLICY_CONFIG_FILE).read_text())
    assert meta["env"] == {"name": SPREAD, "kwargs": {"N": 2, "max_cycles": 10}, "num_agents": 2, "num_actions": 5,
                           "max_steps": 10}
    assert meta["train"]["max_cycles"] == 10  # the task's own time limit: no --max-cycles given
    result = json.loads((tmp_path / "spread" / RESULT_FILE).read_text())
    assert result["iteration"] == 3 and result["global_step"] == 3 * 8 * 10
    assert result["eval"]["eval/return"] < 0  # simple_spread's reward is a negative distance
    policy, _ = load_policy(folder, device="cpu")
    assert policy.num_actions == 5 and policy.obs_dim == 12
    # `marl-grpo eval` plays the run's held-out evaluation episodes again: the same figure
    main(["eval", str(folder), "--matches", "6"])
    assert f"mean return {result['eval']['eval/return']:.3f}" in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    [*NAV, "--group-mode", "branch", "--group-size", "4"],
    [*NAV, "--algo", "ppo"],
    [*PZ, "--group-mode", "episode+team"],
], ids=["vmas-grpo-branch", "vmas-ppo", "pettingzoo-grpo-episode"])
def test_resume_is_exact_on_other_envs(tmp_path, args):
    iteration = 8 * (4 if "vmas:navigation" in args else 10)
    args = [*args, "--no-anneal-lr", "--eval-every", "0"]
    main(args + ["--log-dir", str(tmp_path / "straight"), "--name", "r", "--total-env-steps", str(4 * iteration)])
    main(args + ["--log-dir", str(tmp_path / "halves"), "--name", "r", "--total-env-steps", str(2 * iteration)])
    main(args + ["--log-dir", str(tmp_path / "halves"), "--name", "r", "--total-env-steps", str(4 * iteration),
                 "--resume"])
    straight, halves = (load_file(str(tmp_path / run / "r" / CHECKPOINT_DIR / POLICY_FILE))
                        for run in ("straight", "halves"))
    assert all(torch.equal(straight[k], halves[k]) for k in straight)
    assert json.loads((tmp_path / "halves" / "r" / RESULT_FILE).read_text())["iteration"] == 4


def test_group_modes_an_env_cannot_form_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="group_mode='branch' needs copies of an env's state, which env='pettingzoo:"):
        main([*PZ, "--log-dir", str(tmp_path), "--group-mode", "branch"])
    with pytest.raises(SystemExit, match="teams have one agent each, gives one-member groups"):
        main(["train", "--env", "pettingzoo:mpe2.simple_v3:parallel_env", "--env-kwargs", "max_cycles=10",
              "--group-mode", "team", "--num-envs", "4", "--log-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="normalize_then_sum' needs the soccer env's reward components"):
        main([*NAV, "--log-dir", str(tmp_path), "--reward-aggregation", "normalize_then_sum", "--group-size", "4"])


def test_bad_envs_and_soccer_settings_are_refused_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match="env='atari:pong' is invalid: expected one of soccer"):
        main(["train", "--env", "atari:pong", "--log-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="nosuch"):
        main(["train", "--env", "vmas:nosuch", "--log-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="module 'mpe2.simple_spread_v3' has no function 'nofn': its env "
                                         "constructors are env, parallel_env, raw_env"):
        main(["train", "--env", "pettingzoo:mpe2.simple_spread_v3:nofn", "--log-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="--opponent chaser has no effect with --env vmas:navigation"):
        main([*NAV, "--log-dir", str(tmp_path), "--opponent", "chaser"])
    with pytest.raises(SystemExit, match=r"--env-kwargs \('n_agents=3',\) has no effect with --env soccer"):
        main(["train", "--env-kwargs", "n_agents=3", "--log-dir", str(tmp_path)])


def test_a_checkpoint_of_another_env_is_refused_where_soccer_is_played(tmp_path):
    main([*NAV, "--log-dir", str(tmp_path), "--name", "nav", "--total-env-steps", "32", "--eval-every", "0"])
    folder = str(tmp_path / "nav" / CHECKPOINT_DIR)
    trained_on = "the checkpoint was trained on env 'vmas:navigation', not on soccer"
    for command in (["watch", folder], ["tournament", folder, "--bots", "team"],
                    ["train", "--preset", "tiny", "--opponent", folder, "--log-dir", str(tmp_path)],
                    ["exploit", folder, "--dry-run"]):
        with pytest.raises(SystemExit, match=trained_on):
            main(command)
    with pytest.raises(SystemExit, match="--opponent is for soccer checkpoints"):
        main(["eval", folder, "--opponent", "chaser"])
