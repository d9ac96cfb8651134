"""One self-contained HTML report of result files: an overview, the leaderboard, the paper's plots.

One idea per module, in the order data flows:

- :mod:`.inputs`: the given files and folders → result rows, reliability bins, run folders' configs;
- :mod:`.data`: rows → what each section shows (overview tables, curves, per-severity cells);
- :mod:`.svg`: those tables → inline SVG figures whose series are marked (``class="series"``);
- :mod:`.board`: a :class:`~smoothbench.leaderboard.Leaderboard` → the sortable, filterable table part
  (``smoothbench leaderboard --format html`` renders it alone through the same template);
- :mod:`.page`: the sections → one page from ``templates/page.html`` (inline CSS and JS, no network).

The pipeline call is :func:`smoothbench.pipelines.report.run_report`. Nothing here imports at package
import time, so :mod:`smoothbench.leaderboard.render` can use :mod:`.page` without an import cycle.
"""
