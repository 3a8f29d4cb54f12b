"""Scale-out under torchrun (gloo on CPU): a 2-process run is the 1-process run with the same global
batch, ranks agree, only rank 0 writes, resume is exact, and two "nodes" train together."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from marl_grpo.agents.checkpoint import POLICY_FILE
from marl_grpo.cli import main
from marl_grpo.run.files import CHECKPOINT_DIR

WORKER = str(Path(__file__).with_name("distributed_worker.py"))
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
SOCCER = ["--preset", "tiny", "--max-cycles", "16", "--threads", "1", "--update-epochs", "1", "--num-minibatches", "1"]


def _torchrun(args: list[str], nproc: int = 2, extra: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = [*TORCHRUN, *(extra or ["--standalone"]), f"--nproc-per-node={nproc}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / CHECKPOINT_DIR / POLICY_FILE))


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("extra", [[], ["--algo", "ppo"], ["--opponent", "random", "--group-mode", "episode+team"]])
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path, extra):
    """1 epoch, 1 minibatch, 2 iterations: each rank plays its half of the same matches with the
    same random draws, and the averaged gradient is the global one."""
    steps = ["--total-env-steps", str(2 * 16 * (16 if "episode+team" in extra else 8))]
    main(["train", *SOCCER, *extra, *steps, "--log-dir", str(tmp_path / "one")])
    done = _torchrun(["-m", "marl_grpo", "train", *SOCCER, *extra, *steps, "--log-dir", str(tmp_path / "two")])
    assert done.stdout.count("done:") == 1  # one summary, from rank 0
    assert _max_diff(_weights(tmp_path / "one" / "tiny"), _weights(tmp_path / "two" / "tiny")) < 1e-5


def test_ranks_agree_and_only_rank_0_writes(tmp_path):
    runs = tmp_path / "runs"
    _torchrun([WORKER, str(tmp_path / "out"), "train", *SOCCER, "--update-epochs", "2",
                      "--num-minibatches", "2", "--log-dir", str(runs)])
    ranks = [torch.load(tmp_path / "out" / f"rank{r}.pt") for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    files = sorted(p.relative_to(runs).as_posix() for p in runs.rglob("*") if p.is_file())
    assert len([f for f in files if "tfevents" in f]) == 1, files
    assert sorted(f for f in files if "tfevents" not in f) == [
        "tiny/checkpoint/COMPLETE", "tiny/checkpoint/config.json", "tiny/checkpoint/policy.safetensors",
        "tiny/checkpoint/trainer_state.pt", "tiny/result.json"]
    state = torch.load(runs / "tiny" / CHECKPOINT_DIR / "trainer_state.pt", weights_only=False)
    assert len(state["ranks"]) == 2  # every rank's matches and random streams
    envs = [s["trainer"]["rollout"]["env"]["x"] for s in state["ranks"]]  # [N, B] player positions
    assert envs[0].shape == (4, 8) and not torch.equal(envs[0], envs[1])  # each rank's own half of the 16


def test_resume_under_torchrun_is_exact_and_needs_the_same_world_size(tmp_path):
    args = ["-m", "marl_grpo", "train", *SOCCER, "--update-epochs", "2", "--num-minibatches", "2",
            "--no-anneal-lr", "--opponent", "random"]
    _torchrun([*args, "--log-dir", str(tmp_path / "straight"), "--total-env-steps", str(4 * 128)])
    _torchrun([*args, "--log-dir", str(tmp_path / "halves"), "--total-env-steps", str(2 * 128)])
    _torchrun([*args, "--log-dir", str(tmp_path / "halves"), "--total-env-steps", str(4 * 128), "--resume"])
    assert _max_diff(_weights(tmp_path / "straight" / "tiny"), _weights(tmp_path / "halves" / "tiny")) == 0.0
    with pytest.raises(SystemExit, match="written by 2 process\\(es\\) and this run has 1"):
        main(["train", *args[3:], "--log-dir", str(tmp_path / "halves"), "--total-env-steps", "1024", "--resume"])


def test_a_group_never_straddles_two_processes(tmp_path):
    done = subprocess.run([*TORCHRUN, "--standalone", "--nproc-per-node=2", "-m", "marl_grpo", "train", *SOCCER,
                           "--num-envs", "12", "--group-size", "4", "--log-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "num_envs=12 over 2 processes gives 6 matches each, not a multiple of group_size=4" in done.stderr


def test_two_nodes_on_one_machine_train_together(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [*SOCCER, "--total-env-steps", "256", "--log-dir", str(tmp_path / "nodes")]
    nodes = [subprocess.Popen([*TORCHRUN, "--nnodes=2", f"--node-rank={r}", "--nproc-per-node=1",
                               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=test",
                               "-m", "marl_grpo", "train", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert all(node.returncode == 0 for node in nodes), outputs
    main(["train", *SOCCER, "--total-env-steps", "256", "--log-dir", str(tmp_path / "one")])
    assert _max_diff(_weights(tmp_path / "one" / "tiny"), _weights(tmp_path / "nodes" / "tiny")) < 1e-5


def test_llm_ranks_agree_resume_exactly_and_only_rank_0_writes(tmp_path):
    pytest.importorskip("transformers")
    llm = ["--preset", "test", "--prompts-per-step", "4", "--max-new-tokens", "1", "--update-epochs", "2",
           "--kl-coef", "0.1"]
    _torchrun([WORKER, str(tmp_path / "out"), "llm", *llm, "--log-dir", str(tmp_path / "straight"),
               "--total-iterations", "4"])
    ranks = [torch.load(tmp_path / "out" / f"rank{r}.pt") for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    assert len(list((tmp_path / "straight").rglob("*tfevents*"))) == 1
    for total in ("2", "4"):
        _torchrun(["-m", "marl_grpo", "llm", *llm, "--log-dir", str(tmp_path / "halves"), "--total-iterations",
                   total, *(["--resume"] if total == "4" else [])])
    weights = [load_file(str(tmp_path / run / "llm-test" / CHECKPOINT_DIR / "model.safetensors"))
               for run in ("straight", "halves")]
    assert _max_diff(*weights) == 0.0


def test_a_league_under_torchrun_keeps_ranks_in_step_and_one_pool(tmp_path):
    runs = tmp_path / "runs"
    _torchrun([WORKER, str(tmp_path / "out"), "train", *SOCCER, "--opponent", "league", "--league-snapshot-every", "1",
               "--league-size", "2", "--league-latest-ratio", "0.3", "--log-dir", str(runs)])
    ranks = [torch.load(tmp_path / "out" / f"rank{r}.pt") for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    assert sorted(p.name for p in (runs / "tiny" / "league").iterdir()) == ["snapshot-000002", "snapshot-000003"]
    state = torch.load(runs / "tiny" / CHECKPOINT_DIR / "trainer_state.pt", weights_only=False)
    league = state["trainer"]["league"]
    assert league["order"] == ["team", "chaser", "snapshot-000002", "snapshot-000003"]
    opponents = [s["trainer"]["rollout"]["league"]["opponent"] for s in state["ranks"]]
    assert [o.shape for o in opponents] == [(8,), (8,)]  # each rank's own matches drew their opponents


def test_rank_device_resolves_the_run_device_per_rank():
    from marl_grpo.run.distributed import World, rank_device

    auto = rank_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert rank_device("cpu", World(rank=1, world_size=2, local_rank=1)) == torch.device("cpu")
    if torch.cuda.is_available():  # one GPU per rank under torchrun
        assert rank_device("cuda", World(rank=1, world_size=2, local_rank=0)) == torch.device("cuda", 0)
    else:
        with pytest.raises(ValueError, match="CUDA is not available"):
            rank_device("cuda")
    with pytest.raises(ValueError, match="device='gpu0' is invalid"):
        rank_device("gpu0")
