import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import marl_grpo  # noqa: E402,F401  (sets the OpenMP wait policy before torch loads)
import torch  # noqa: E402

# Tests run in parallel workers (pytest -n 2) on 2 cores: one torch thread each.
torch.set_num_threads(1)
