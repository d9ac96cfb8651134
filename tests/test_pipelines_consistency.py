"""``smoothbench consistency`` end to end: ensemble-size consistency and generated CIFAR-10-P, through the CLI."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import assert_png, run_cli

pytestmark = pytest.mark.slow


def test_consistency_command(trained_synthetic_mcdo, tmp_path):
    out = tmp_path / "consistency.csv"
    run_cli("consistency", trained_synthetic_mcdo, "--ensembles", "1,2,4", "--subset", "80", "--out", out,
            "--plot", tmp_path / "plots", "--quiet")
    rows = pd.read_csv(out)
    assert list(rows.ensemble_size) == [1, 2, 4] and set(rows.kind) == {"mc-size"}
    largest = rows[rows.ensemble_size == 4].iloc[0]
    assert largest.agreement == 1.0 and largest.tv == pytest.approx(0.0, abs=1e-7)
    assert 0.0 <= rows.seed_agreement.min() <= 1.0
    assert_png(tmp_path / "plots" / f"{trained_synthetic_mcdo.name}_agreement_vs_size.png")


def test_cifar10_p_generated_consistency(trained_cifar10_mcdo, cifar10_dir, tmp_path):
    out = tmp_path / "p.csv"
    run_cli("consistency", trained_cifar10_mcdo, "--data-dir", cifar10_dir, "--perturbations",
            "gaussian_noise,translate", "--generate", "--ensembles", "1,2", "--subset", "12", "--out", out, "--quiet")
    rows = pd.read_csv(out)
    prow = rows[rows.kind == "perturbation"]
    assert set(prow.perturbation) == {"gaussian_noise", "translate"} and len(prow) == 4
    assert prow.consistency.between(0, 1).all() and prow.flip_prob.between(0, 1).all()
    assert (prow.cec > 0).all()
