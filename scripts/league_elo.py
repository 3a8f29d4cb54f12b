"""Draw a league run's online Elo curve: `python scripts/league_elo.py runs/league-2v2 [docs/league-elo.png]`."""

import sys

from marl_grpo.tools.tournament import plot_league_elo

if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit("usage: python scripts/league_elo.py RUN_DIR [OUT.png]")
    print(plot_league_elo(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else "docs/league-elo.png"))
