"""The OpenMP wait policy (MARL_GRPO_OMP_WAIT, `marl_grpo.omp_wait_env`): the choice, and that it
is applied while torch loads and nowhere else.

What libgomp really read is checked with OMP_DISPLAY_ENV=VERBOSE, which makes it print its settings
to stderr when it is loaded (no timing involved). Each such check runs a fresh interpreter: the
policy can only be set before torch is imported.
"""

import os
import subprocess
import sys

import pytest

import marl_grpo
from marl_grpo import OMP_WAIT_OPTIONS, omp_wait_env

OMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MARL_GRPO_OMP_WAIT", "OMP_DISPLAY_ENV")

# in a child: import marl_grpo then torch, report the variables after both, what a grandchild
# process inherits, and (through OMP_DISPLAY_ENV, on stderr) what libgomp read
CHILD = """
import os, subprocess, sys
import marl_grpo
before_torch = 'torch' in sys.modules
import torch
grandchild = subprocess.run([sys.executable, '-c', "import os; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"],
                            capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != 'OMP_DISPLAY_ENV'})
print('torch_before', before_torch)
print('after', os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))
print('grandchild', grandchild.stdout.strip())
print('chosen', marl_grpo.OMP_WAIT_ENV)
"""


def run_child(code: str, **env: str) -> tuple[dict[str, str], dict[str, str]]:
    """Run `code` in a fresh interpreter with `env` on top of a clean OpenMP environment; return its
    `key rest` stdout lines as a dict, and the OMP_WAIT_POLICY and GOMP_SPINCOUNT libgomp read."""
    base = {k: v for k, v in os.environ.items() if k not in OMP_VARIABLES}
    proc = subprocess.run([sys.executable, "-c", code], env={**base, "OMP_DISPLAY_ENV": "VERBOSE", **env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    read = {}
    for line in proc.stderr.splitlines():  # "  OMP_WAIT_POLICY = 'ACTIVE'"
        name, _, value = line.strip().partition(" = ")
        if name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
            read[name] = value.strip("'")
    # the pinned torch CPU wheel (Linux) uses GNU libgomp, which prints its settings
    assert read, f"no libgomp settings printed with OMP_DISPLAY_ENV: {proc.stderr[-500:]}"
    return out, read


# ------------------------------------------------------------------------------ the choice itself
@pytest.mark.parametrize("cpus, load, expected", [
    (2, 0.0, {"OMP_WAIT_POLICY": "ACTIVE"}),      # idle: spin for good, as before (the 15-minute figures)
    (64, 0.3, {"OMP_WAIT_POLICY": "ACTIVE"}),
    (1, 0.0, {"GOMP_SPINCOUNT": "3000"}),         # one CPU: a spinning worker could only steal it
    (2, 0.5, {"GOMP_SPINCOUNT": "3000"}),         # busy: a bounded spin (1.3x the best, ACTIVE 2.2x)
    (2, 7.5, {"GOMP_SPINCOUNT": "3000"}),
    (64, 80.0, {"GOMP_SPINCOUNT": "3000"}),
    (64, 63.0, {"GOMP_SPINCOUNT": "3000"}),      # fewer than 1.5 CPUs left idle
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
        omp_wait_env(bad, environ={})
    message = str(err.value)
    assert repr(bad) in message and "MARL_GRPO_OMP_WAIT" in message
    assert all(option in message for option in OMP_WAIT_OPTIONS)


def test_a_bad_value_fails_the_import():
    base = {k: v for k, v in os.environ.items() if k not in OMP_VARIABLES}
    proc = subprocess.run([sys.executable, "-c", "import marl_grpo"], env={**base, "MARL_GRPO_OMP_WAIT": "fast"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "ValueError: MARL_GRPO_OMP_WAIT='fast' is not a valid value: choose one of auto, active, passive, default"


# ------------------------------------------------------------------- applied while torch loads only
@pytest.mark.parametrize("option, policy, spincount", [
    (None, None, None),  # auto (unset): what it chose depends on the load now, see below
    ("active", "ACTIVE", "30000000000"),
    ("passive", "PASSIVE", "0"),
    ("default", "PASSIVE", "300000"),  # libgomp's default: prints PASSIVE, spins 300k times first
])
def test_the_policy_takes_effect_and_is_not_inherited(option, policy, spincount):
    out, read = run_child(CHILD, **({} if option is None else {"MARL_GRPO_OMP_WAIT": option}))
    if option is None:  # auto: ACTIVE when the machine was idle, else the bounded spin
        # (libgomp prints PASSIVE for "not ACTIVE")
        policy, spincount = (("ACTIVE", "30000000000") if out["chosen"] == "{'OMP_WAIT_POLICY': 'ACTIVE'}"
                             else ("PASSIVE", "3000"))
        assert out["chosen"] in ("{'OMP_WAIT_POLICY': 'ACTIVE'}", "{'GOMP_SPINCOUNT': '3000'}")
    assert read == {"OMP_WAIT_POLICY": policy, "GOMP_SPINCOUNT": spincount}
    assert out["torch_before"] == "False"  # import marl_grpo stays cheap
    assert out["after"] == "None None"  # gone from this process's environment once torch is loaded
    assert out["grandchild"] == "None None"  # and so from its children's


@pytest.mark.parametrize("user", ["PASSIVE", "active"])
def test_a_user_set_policy_is_kept_and_inherited(user):
    out, read = run_child(CHILD, OMP_WAIT_POLICY=user, MARL_GRPO_OMP_WAIT="active" if user == "PASSIVE" else "passive")
    assert out["chosen"] == "{}"
    assert read["OMP_WAIT_POLICY"] == user.upper()
    assert out["after"] == f"{user} None"  # untouched, and children inherit the user's own value
    assert out["grandchild"] == f"{user} None"


def test_a_user_spincount_is_kept():
    out, read = run_child(CHILD, GOMP_SPINCOUNT="12345", MARL_GRPO_OMP_WAIT="active")
    assert out["chosen"] == "{}"
    assert read["GOMP_SPINCOUNT"] == "12345"
    assert out["after"] == "None 12345" and out["grandchild"] == "None 12345"


def test_torch_imported_first_is_left_alone():
    out, read = run_child("import os, sys, torch, marl_grpo\n"
                          "print('hook', any(type(f).__name__ == '_SetWhileTorchLoads' for f in sys.meta_path))\n"
                          "print('after', os.environ.get('OMP_WAIT_POLICY'))", MARL_GRPO_OMP_WAIT="active")
    assert read["OMP_WAIT_POLICY"] == "PASSIVE"  # libgomp's default: marl_grpo came too late
    assert out == {"hook": "False", "after": "None"}


def test_this_process_carries_no_variable_of_ours():
    # the test session imported marl_grpo (conftest) and torch: nothing may be left in the environment
    assert "torch" in sys.modules
    assert all(name not in os.environ for name in marl_grpo.OMP_WAIT_ENV)
    assert not any(type(f).__name__ == "_SetWhileTorchLoads" for f in sys.meta_path)
