"""No hidden process-wide state (DESIGN.md, "Process state"): importing marl_grpo, building or
stepping an env, training and benchmarking leave the environment, torch's thread count, the import
hooks and the compiler's settings as they found them. Only the `marl-grpo` command chooses the
OpenMP wait policy (`--omp-wait`), once, before torch loads.

Nothing here depends on which OpenMP runtime torch uses: the checks read the environment at the
moment torch is imported, not what the runtime printed.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
import warnings

import pytest
import torch
import torch._inductor.config as inductor_config
from torch.overrides import TorchFunctionMode

from marl_grpo.cli import main
from marl_grpo.envs import SoccerEngine, SoccerConfig, SoccerVecEnv
from marl_grpo.rl import preset, train
from marl_grpo.run.threads import OMP_WAIT_OPTIONS, omp_wait_env, torch_threads
from marl_grpo.tools.bench import EnvBenchConfig, run_env_bench

OMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MARL_GRPO_OMP_WAIT")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any OpenMP wait setting, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if k not in OMP_VARIABLES}, **extra}


def run_python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], env=clean_env(**env), capture_output=True,
                          text=True, timeout=180)


def process_state() -> dict:
    """What the library must not change: the environment, torch's thread count, the import hooks
    and inductor's compile threads. (torch.compile itself leaves private `_TORCHINDUCTOR_*`
    variables behind: those are torch's, not ours.)"""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("_TORCHINDUCTOR_")}
    return {"environ": environ, "threads": torch.get_num_threads(), "meta_path": list(sys.meta_path),
            "compile_threads": inductor_config.compile_threads}


# ------------------------------------------------------------------------------ the choice itself
@pytest.mark.parametrize("cpus, load, expected", [
    (2, 0.0, {"OMP_WAIT_POLICY": "ACTIVE"}),      # idle: spin for good
    (64, 0.3, {"OMP_WAIT_POLICY": "ACTIVE"}),
    (1, 0.0, {"GOMP_SPINCOUNT": "3000"}),         # one CPU: a spinning worker could only steal it
    (2, 0.5, {"GOMP_SPINCOUNT": "3000"}),         # busy: a bounded spin
    (2, 7.5, {"GOMP_SPINCOUNT": "3000"}),
    (64, 63.0, {"GOMP_SPINCOUNT": "3000"}),       # fewer than 1.5 CPUs left idle
    (64, 40.0, {"OMP_WAIT_POLICY": "ACTIVE"}),
])
def test_auto_spins_for_good_only_on_an_idle_machine(monkeypatch, cpus, load, expected):
    for option in ("auto", "AUTO", None, "", "  "):
        assert omp_wait_env(option, environ={}, cpus=cpus, load=load) == expected
    # read from the OS when not given
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load), raising=False)
    assert omp_wait_env("auto", environ={"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": ""}) == expected


@pytest.mark.parametrize("option, expected", [
    ("active", {"OMP_WAIT_POLICY": "ACTIVE"}),
    (" Active ", {"OMP_WAIT_POLICY": "ACTIVE"}),
    ("PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("default", {}),
])
def test_explicit_options(option, expected):
    assert omp_wait_env(option, environ={}) == expected


@pytest.mark.parametrize("user", [{"OMP_WAIT_POLICY": "passive"}, {"OMP_WAIT_POLICY": "ACTIVE"},
                                  {"GOMP_SPINCOUNT": "10000"}])
@pytest.mark.parametrize("option", OMP_WAIT_OPTIONS)
def test_a_users_own_openmp_setting_wins(user, option):
    assert omp_wait_env(option, environ=user) == {}


@pytest.mark.parametrize("bad", ["spin", "on", "ACTIVE,PASSIVE", "1"])
def test_a_bad_value_names_itself_and_the_choices(bad):
    with pytest.raises(ValueError) as err:
        omp_wait_env(bad, environ={}, name="MARL_GRPO_OMP_WAIT")
    assert str(err.value) == (f"MARL_GRPO_OMP_WAIT {bad!r} is not a valid value: choose one of "
                              "auto, active, passive, default")


# ---------------------------------------------------------------------------- the library: nothing
IMPORT_PROBE = """
import json, os, sys
before = {"environ": dict(os.environ), "meta_path": [repr(f) for f in sys.meta_path]}
import marl_grpo
import marl_grpo.envs
print(json.dumps({"environ": dict(os.environ) == before["environ"],
                  "meta_path": [repr(f) for f in sys.meta_path] == before["meta_path"],
                  "hooks_added": len(sys.meta_path) - len(before["meta_path"]),
                  "torch_threads": __import__("torch").get_num_threads()}))
"""


@pytest.mark.parametrize("variable", [None, "active", "fast"])
def test_import_marl_grpo_changes_nothing(variable):
    # a fresh interpreter; a bad MARL_GRPO_OMP_WAIT no longer concerns the library at all
    env = {} if variable is None else {"MARL_GRPO_OMP_WAIT": variable}
    proc = run_python(IMPORT_PROBE, **env)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["environ"] is True and seen["meta_path"] is True and seen["hooks_added"] == 0
    # torch's own default thread count, which the library left alone
    default = run_python("import torch; print(torch.get_num_threads())", **env)
    assert seen["torch_threads"] == int(default.stdout.strip())


class ThreadCounts(TorchFunctionMode):
    """Records torch's thread count at every torch call made inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[int] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen.add(torch.get_num_threads())
        return func(*args, **(kwargs or {}))


def test_building_and_stepping_an_env_changes_nothing():
    with torch_threads(2):
        before = process_state()
        env = SoccerVecEnv(num_envs=64, device="cpu", team_size=2)
        env.reset(seed=0)
        with ThreadCounts() as counts:
            for _ in range(3):
                env.step(torch.randint(0, 10, (64, env.num_agents)))
        assert counts.seen == {2}  # the default never touches the thread count, not even during a step
        assert process_state() == before


def test_cpu_threads_is_an_opt_in_cap_restored_after_each_step():
    with torch_threads(2):
        # "auto": one thread per 65536 elements of [2, N, B]: 2 * 4 * 64 -> 1; 2 * 4 * 16384 -> 2
        for num_envs, cpu_threads, during in [(64, "auto", {1, 2}), (16384, "auto", {2}), (64, 1, {1, 2}),
                                              (64, 3, {2})]:
            env = SoccerVecEnv(num_envs=num_envs, device="cpu", team_size=2, cpu_threads=cpu_threads)
            with ThreadCounts() as counts:  # capped in the rules; the observation's product is uncapped
                env.step(torch.zeros(num_envs, env.num_agents, dtype=torch.long))
            assert counts.seen == during, (num_envs, cpu_threads)
            assert torch.get_num_threads() == 2  # the caller's count is back
        # an error inside the step restores it too
        env = SoccerVecEnv(num_envs=64, device="cpu", team_size=2, cpu_threads=1, check_actions=False)
        with pytest.raises(Exception):
            env.step(torch.full((64, env.num_agents), 99, dtype=torch.long))
        assert torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, "fast", True])
def test_a_bad_cpu_threads_names_itself(bad):
    message = f"cpu_threads={bad!r} is invalid: expected None, 'auto' or an int >= 1"
    with pytest.raises(ValueError, match=re.escape(message)):
        SoccerEngine(SoccerConfig(team_size=1), 4, cpu_threads=bad)


def test_a_compiled_env_leaves_inductors_settings_alone():
    # compile_threads=1 holds for the env's own graphs only (an option of theirs), not for the process
    # (3 here: whatever the machine's default, the process's value must stay it)
    with torch_threads(2), inductor_config.patch(compile_threads=3):
        before = process_state()
        env = SoccerVecEnv(num_envs=8, device="cpu", team_size=1, max_cycles=8, compile=True, cpu_threads="auto")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            env.reset(seed=0)
            for _ in range(2):
                env.step(torch.zeros(8, env.num_agents, dtype=torch.long))
        assert not [w for w in caught if "torch.compile failed" in str(w.message)]  # it really compiled
        assert process_state() == before


def test_torch_threads_restores_the_count_even_on_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with torch_threads(before + 1):
            assert torch.get_num_threads() == before + 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_train_and_bench_env_put_the_callers_thread_count_back(tmp_path, capsys):
    before = torch.get_num_threads()
    cfg = dataclasses.replace(preset("tiny"), log_dir=str(tmp_path), max_cycles=16, total_env_steps=128,
                              threads=before + 1, device="cpu")
    train(cfg)
    assert torch.get_num_threads() == before
    run_env_bench(EnvBenchConfig(threads=before + 1, num_envs=16, steps=2, repeats=1, peers=False, compile=False,
                                 sweep=False, pettingzoo=False))
    assert f"{before + 1} threads" in capsys.readouterr().out  # it ran on its own count
    assert torch.get_num_threads() == before


# ------------------------------------------------------------- the command: once, before torch loads
# In a fresh interpreter: record the OpenMP variables at the moment torch is imported, run the
# command, then print them (the command's own output comes first).
CLI_PROBE = """
import json, os, sys
seen = {}

class RecordWhenTorchLoads:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.update({k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")})
        return None

sys.meta_path.insert(0, RecordWhenTorchLoads())
from marl_grpo.cli import main
assert "torch" not in sys.modules, "importing the command loaded torch"
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(seen))
"""


@pytest.mark.parametrize("options, env, expected", [
    (["--omp-wait", "passive"], {}, {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None}),
    (["--omp-wait=active"], {}, {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": None}),
    ([], {"MARL_GRPO_OMP_WAIT": "passive"}, {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None}),
    (["--omp-wait", "active"], {"MARL_GRPO_OMP_WAIT": "passive"}, {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": None}),
    (["--omp-wait", "default"], {}, {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None}),
    (["--omp-wait", "active"], {"GOMP_SPINCOUNT": "12345"}, {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "12345"}),
])
def test_the_command_sets_the_policy_before_torch_loads(options, env, expected):
    proc = run_python(CLI_PROBE, *options, "bench", "env", "--help", **env)
    assert proc.returncode == 0, proc.stderr
    assert "usage: marl-grpo bench env" in proc.stdout  # the command ran, and imported torch
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == expected


def test_auto_sets_one_of_its_two_policies_before_torch_loads():
    proc = run_python(CLI_PROBE, "bench", "env", "--help")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) in (
        {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": None}, {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "3000"})


@pytest.mark.parametrize("argv, variable, message", [
    (["--omp-wait", "fast", "train"], None,
     "marl-grpo: --omp-wait 'fast' is not a valid value: choose one of auto, active, passive, default"),
    (["--omp-wait=spin", "train"], None,
     "marl-grpo: --omp-wait 'spin' is not a valid value: choose one of auto, active, passive, default"),
    (["train"], "fast",
     "marl-grpo: MARL_GRPO_OMP_WAIT 'fast' is not a valid value: choose one of auto, active, passive, default"),
    (["--omp-wait"], None, "marl-grpo: --omp-wait needs a value: one of auto, active, passive, default"),
])
def test_a_bad_omp_wait_is_one_line(monkeypatch, argv, variable, message):
    monkeypatch.delenv("MARL_GRPO_OMP_WAIT", raising=False)
    if variable is not None:
        monkeypatch.setenv("MARL_GRPO_OMP_WAIT", variable)
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert str(err.value) == message


def test_a_bad_omp_wait_fails_the_command_in_a_fresh_process():
    proc = run_python("from marl_grpo.cli import main; main()", "--omp-wait", "fast", "train")
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("marl-grpo: --omp-wait 'fast' is not a valid value: "
                                   "choose one of auto, active, passive, default")


def test_the_command_called_after_torch_sets_nothing(monkeypatch, capsys):
    # torch is loaded in this process: the policy can no longer take effect, so nothing is set
    for name in OMP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    with pytest.raises(SystemExit):
        main(["--omp-wait", "active", "bench", "env", "--help"])
    assert dict(os.environ) == before
    assert "--omp-wait active has no effect: torch was imported before the command started" in capsys.readouterr().err
