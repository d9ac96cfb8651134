"""Result tables: the tidy-table store, corruption summaries and corruption baselines.

- :mod:`smoothbench.results.store`: row keys, atomic de-duplicated CSV/JSON writes, reading result files;
- :mod:`smoothbench.results.summaries`: cAcc, cNLL, cECE, cBrier, mCE, relative mCE, mCNLL, mCECE;
- :mod:`smoothbench.results.baselines`: the built-in and file baselines those ratios divide by.
"""

from smoothbench.results.baselines import load_baseline
from smoothbench.results.store import read_results, write_rows
from smoothbench.results.summaries import per_corruption_table, summarize_corruptions

__all__ = ["load_baseline", "per_corruption_table", "read_results", "summarize_corruptions", "write_rows"]
