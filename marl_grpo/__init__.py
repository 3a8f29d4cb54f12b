"""marl-grpo: a multi-agent soccer simulator (PettingZoo API) and group-relative trainers."""

import os

# On small virtual machines an idle OpenMP worker thread is descheduled and takes milliseconds to
# wake up, which made multi-threaded torch ops up to 1000x slower here (a 4096-element sqrt took
# 8 ms with 2 threads, 3 us with 1). Keeping workers spinning between ops avoids that. It only
# takes effect if marl_grpo is imported before torch; set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")

__version__ = "0.1.0"
