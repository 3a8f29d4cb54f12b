"""`play_once`: each copy's result at its first end, the later episodes ignored."""

import pytest
import torch

from marl_grpo.envs.team import play_once


class Countdown:
    """B copies; copy b ends after `lengths[b]` steps, then restarts; `infos["episode_return"]`
    is [B, 1] holding (episode index * 100 + the sum of the actions taken in that episode)."""

    def __init__(self, lengths, max_steps=10):
        self.lengths = torch.tensor(lengths)
        self.num_envs, self.device, self.max_steps = len(lengths), torch.device("cpu"), max_steps

    def reset(self, seed=None):
        self.t = torch.zeros(self.num_envs, dtype=torch.long)
        self.episode = torch.zeros(self.num_envs, dtype=torch.long)
        self.total = torch.zeros(self.num_envs, dtype=torch.long)
        return self.t[:, None, None].float()

    def step(self, actions):
        self.t += 1
        self.total += actions[:, 0]
        done = self.t >= self.lengths
        infos = {"episode_return": (self.episode * 100 + self.total)[:, None]}
        self.episode += done.long()
        self.t = torch.where(done, 0, self.t)
        self.total = torch.where(done, 0, self.total)
        return self.t[:, None, None].float(), None, done, torch.zeros_like(done), infos


def test_each_copy_counts_once_at_its_first_end():
    env = Countdown([1, 3, 2])
    steps = []

    def act(obs):
        steps.append(1)
        return torch.full((3, 1), len(steps))  # action k at step k

    out = play_once(env, act, seed=0, key="episode_return")
    # copy 0 ends at step 1 (action 1), copy 1 at step 3 (1+2+3), copy 2 at step 2 (1+2); all first episodes
    assert out[:, 0].tolist() == [1, 6, 3]
    assert len(steps) == 3  # stops as soon as every copy has ended once


def test_a_copy_that_never_ends_is_an_error():
    with pytest.raises(RuntimeError, match="1 of 2 episodes did not end within max_steps=4"):
        play_once(Countdown([2, 9], max_steps=4), lambda obs: torch.zeros(2, 1, dtype=torch.long), 0, "episode_return")
