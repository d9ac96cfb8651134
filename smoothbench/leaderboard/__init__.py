"""Leaderboards: :mod:`.build` ranks the result rows of many runs, :mod:`.render` renders the board."""

from smoothbench.leaderboard.build import Leaderboard, build_leaderboard
from smoothbench.leaderboard.render import render, write

__all__ = ["Leaderboard", "build_leaderboard", "render", "write"]
