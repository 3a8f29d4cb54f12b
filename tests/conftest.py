import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import marl_grpo  # noqa: E402,F401  (registers the PettingZoo env)
import pytest  # noqa: E402
import torch  # noqa: E402

# Tests run in parallel workers (pytest -n 2) on 2 cores: one torch thread each.
torch.set_num_threads(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device", choices=("cpu", "cuda"), default="cpu",
        help="torch device of the tests that run the env, the policy, the learners or the LLM agent "
             "(the `device` fixture); the others always run on the CPU. Default: cpu.",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--device") == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--device cuda was given, but torch.cuda.is_available() is False "
                                "(no GPU, or a CPU-only torch build); run with --device cpu")


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> str:
    """The torch device ("cpu" or "cuda") given by `pytest --device`."""
    return pytestconfig.getoption("--device")
