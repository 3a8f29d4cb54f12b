"""# Soccer

| | |
|---|---|
| Import | `from marl_grpo.envs import soccer_v0` (or `pettingzoo.make("parallel", "marl_grpo/soccer-v0")`) |
| Actions | Discrete(10) |
| Parallel API | Yes |
| Agents | `blue_0 .. blue_{n-1}, red_0 .. red_{m-1}` (1 to 11 a side) |
| Observation | Box(-inf, inf, (obs_dim,), float32); 35 for 2v2, 46 for 3v3 |
| State | Box(-inf, inf, (4 * num_agents + 7,), float32) |

Two teams of discs play football on a continuous walled pitch. Blue attacks +x, red -x.
Players accelerate, feel drag and have a top speed; they bump into each other and push the
ball, and can kick it when it is in reach. A goal (+1 for the scoring team, -1 for the other,
shared by each teammate) is followed by a kickoff. The match is truncated after `max_cycles`
steps (or terminated once a team has `goals_to_win` goals, if set).

### Actions (in the agent's own frame, where it always attacks +x)

| index | name | effect |
|---|---|---|
| 0 | stay | no acceleration (drag slows the player) |
| 1-8 | E, NE, N, NW, W, SW, S, SE | accelerate towards that compass direction (E = towards the opponent goal) |
| 9 | kick | if the ball is within `kick_reach` of the player's surface, add `kick_power` to its velocity along the player->ball line |

### Observations (egocentric and mirrored)

Red sees the pitch rotated by 180 degrees, so both teams see themselves attacking +x and one
shared policy plays either side. Positions are divided by the half length, player velocities by
the top speed, the ball's by `kick_power`. Blocks in order (`SoccerConfig.obs_layout()` gives
the slices), with M = the larger team size:

| block | width | content |
|---|---|---|
| self_pos, self_vel | 2 + 2 | own position and velocity |
| ball_rel, ball_vel | 2 + 2 | ball position relative to the agent, ball velocity |
| ball_in_reach | 1 | 1 if a kick would connect now |
| teammates | 5 (M - 1) | per teammate in slot order: relative position, velocity, present flag |
| opponents | 5 M | per opponent in slot order: relative position, velocity, present flag |
| opp_goal_rel, own_goal_rel | 2 + 2 | centres of the attacked and the defended goal, relative to the agent |
| time_left | 1 | 1 at kickoff, 0 at the time limit |
| score | 2 | 0.2 * (own goals, opponent goals) |
| slot | M | one-hot of the agent's slot in its team |
| team | 2 | one-hot (blue, red) |

Missing teammates or opponents (uneven teams) are zeros with present flag 0.

### Rewards

`reward = sum of weight * component`; each agent's infos hold the weighted components as flat
numbers `infos[agent]["reward_<name>"]`, with the running score from its side (`score_for`,
`score_against`): the same keys at `reset` (zeros) and every `step` (`INFO_KEYS`). Weights are
arguments (`reward_<name>`).

| component | default weight | per step, per agent |
|---|---|---|
| goal | 1.0 | +1 if its team scored, -1 if it conceded (shared by the team) |
| ball_touch | 0.01 | 1 if it pushed or kicked the ball |
| ball_progress | 0.1 | ball movement towards the opponent goal (in half lengths), if it touched the ball last |
| shot_on_target | 0.1 | 1 if it kicked the ball on a straight path that ends inside the goal mouth |
| dist_to_ball | 0.001 | minus its distance to the ball (in half lengths) |

### Arguments

`parallel_env(render_mode=None, **kwargs)`, where kwargs are `SoccerConfig` fields, e.g.
`team_size=2`, `blue_size`, `red_size`, `max_cycles=300`, `goals_to_win=0`, physics
(`player_accel`, `player_drag`, `player_max_speed`, `ball_friction`, `kick_power`, ...) and
reward weights. A misspelt argument raises, naming it.

### Version history

* v0: initial release.
"""

from pettingzoo.utils import wrappers
from pettingzoo.utils.conversions import parallel_to_aec_wrapper

from .soccer_parallel import parallel_env


def raw_env(**kwargs):
    """The AEC form: agents act in turn, actions are applied together once all have acted."""
    return parallel_to_aec_wrapper(parallel_env(**kwargs))


def env(**kwargs):
    """The AEC form wrapped in PettingZoo's `OrderEnforcingWrapper`."""
    return wrappers.OrderEnforcingWrapper(raw_env(**kwargs))


__all__ = ["env", "parallel_env", "raw_env"]
