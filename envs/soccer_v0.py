"""# Soccer

| | |
|---|---|
| Import | `from marl_grpo.envs import soccer_v0` (or `pettingzoo.make("parallel", "marl_grpo/soccer-v0")`) |
| Actions | Discrete(10) |
| Parallel API | Yes |
| Agents | `blue_0 .. blue_{n-1}, red_0 .. red_{m-1}` (1 to 11 a side); `blue_*` only with an `opponent` |
| Observation | Box(*SoccerConfig.observation_bounds(), (obs_dim,), float32): finite, per feature (below); 35 for 2v2, 46 for 3v3 |
| State | Box(*SoccerConfig.state_bounds(), (4 * num_agents + 7,), float32): finite, per feature (below) |

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

| block | width | content | bounds (2v2 defaults) |
|---|---|---|---|
| self_pos, self_vel | 2 + 2 | own position and velocity | ±(Px, Py) (0.965, 0.585); ±V (10.9) |
| ball_rel, ball_vel | 2 + 2 | ball position relative to the agent, ball velocity | ±(Bx + Px, By + Py) (1.965, 1.183); ±ball_max_speed / kick_power (1.273) |
| ball_in_reach | 1 | 1 if a kick would connect now | [0, 1] |
| teammates | 5 (M - 1) | per teammate in slot order: relative position, velocity, present flag | ±(2 Px, 2 Py) (1.93, 1.17), ±V, [0, 1] |
| opponents | 5 M | per opponent in slot order: relative position, velocity, present flag | as teammates |
| opp_goal_rel, own_goal_rel | 2 + 2 | centres of the attacked and the defended goal, relative to the agent | x in [1 - Px, 1 + Px] and [-1 - Px, -1 + Px], y ±Py |
| time_left | 1 | 1 at kickoff, 0 at the time limit | [0, 1] |
| score | 2 | 0.2 * (own goals, opponent goals) | [0, 0.2 G] (30; 0.2 * goals_to_win if set) |
| slot | M | one-hot of the agent's slot in its team | [0, 1] |
| team | 2 | one-hot (blue, red) | [0, 1] |

Missing teammates or opponents (uneven teams) are zeros with present flag 0.

The bounds are proved from the rules for any valid config (`SoccerConfig.bound_magnitudes`
holds the argument); continuous ones are padded by 1e-5 relative for float32 rounding. In half
lengths L: Px = max(L - player_radius, farthest kickoff spot + kickoff_jitter) / L and likewise Py
across the width W; By = (W - ball_radius) / L; Bx = 1 (a ball past the goal line is a goal),
larger only for absurd configs where one step can carry the ball across the pitch. V, in top
speeds, is loose on purpose: top speed is enforced before contacts, not after, so a player
hit by others and by the ball can exceed it; V assumes every contact at once,
1 + (N - 1)(1 + restitution) plus the ball's hardest hit (N players), i.e. 10.9 for 2v2, 56 for
11v11, while play stays within about 1.7 at the default physics (6.5 with restitution 1, a heavy
ball and hard kicks). G bounds one team's goals in a match: `goals_to_win` if set, else
max_cycles // k with k the fewest steps from a kickoff to a goal at the ball's largest
one-step move (150 for 2v2; play scores fewer than 10), so set `goals_to_win` before normalizing
the score. The state (world frame: every player's x, y, vx, vy, then the ball's, time left,
score) uses the same bounds: ±Px, ±Py, ±V, ±Bx, ±By, ±ball_max_speed / kick_power, [0, 1], [0, 0.2 G].

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

`opponent` (default None: both teams are agents) plays red inside the env, and only the blue
players are agents (`agents`, spaces, observations, rewards and infos are blue's):
`opponent="team"`, `"chaser"` or `"random"` is a scripted bot, weakened by `opponent_strength` in
[0, 1]; any object with `act(red_obs [1, n_red, D]) -> int64 [1, n_red]` plays too, e.g. a trained
checkpoint: `opponent=marl_grpo.agents.load_policy_opponent(path, SoccerConfig(team_size=2))` (a path
itself is refused: `marl_grpo.envs` cannot load a policy). `reset(seed=s)` seeds the opponent with
`s`. See `marl_grpo.envs.opponent` for the protocol and the seeding.

    env = soccer_v0.parallel_env(team_size=2, opponent="team", opponent_strength=0.8)
    obs, infos = env.reset(seed=0)                      # obs: blue_0, blue_1
    obs, rewards, terms, truncs, infos = env.step({a: env.action_space(a).sample() for a in env.agents})

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
