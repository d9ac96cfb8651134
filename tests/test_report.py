"""``smoothbench report``: one self-contained page from real result files; values, escaping, bad inputs.

The page is parsed here as HTML (what it holds); ``test_report_browser.py`` checks what a browser does with it.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from board_rows import THREE
from report_inputs import write_results
from smoothbench.errors import UserError
from smoothbench.leaderboard import build_leaderboard
from smoothbench.leaderboard.render import to_html
from smoothbench.pipelines.report import ReportRequest, run_report
from smoothbench.report.page import leaderboard_section, render_page

SECTIONS = ["about", "overview", "leaderboard", "ensemble-size", "corruptions", "reliability", "consistency",
            "all-metrics"]


class ParsedPage(HTMLParser):
    """Sections, figures (with the series marked inside them), board tables, scripts, links and text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.figures: dict[str, dict] = {}
        self.tables: list[dict] = []
        self.scripts = 0
        self.links: list[str] = []
        self.text: list[str] = []
        self._figure: str | None = None
        self._section = ""
        self._cell: dict | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [v for k, v in attrs.items() if k in ("src", "href", "xlink:href") and v]
        if tag == "script":
            self.scripts += 1
        elif tag == "section":
            self._section = attrs["id"]
            self.sections.append(attrs["id"])
        elif tag == "figure":
            self._figure = attrs["id"]
            self.figures[attrs["id"]] = {"kind": attrs["data-kind"], "count": int(attrs["data-series-count"]),
                                         "series": {}, "section": self._section}
        elif tag == "table" and "board" in attrs.get("class", ""):
            self.tables.append({"group": int(attrs["data-group"]), "section": self._section, "columns": [], "rows": []})
        elif tag == "th" and "data-column" in attrs and self.tables:
            self.tables[-1]["columns"].append(attrs["data-column"])
        elif tag == "tr" and "data-size" in attrs:
            self.tables[-1]["rows"].append([])
        elif tag == "td" and self.tables and self.tables[-1]["rows"] and self._figure is None:
            self._cell = {"v": attrs.get("data-v", ""), "text": "", "best": "best" in attrs.get("class", "")}
            self.tables[-1]["rows"][-1].append(self._cell)
        if self._figure is not None and "data-series" in attrs:
            self.figures[self._figure]["series"][int(attrs["data-series"])] = attrs["data-label"]

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None
        elif tag == "td":
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None and not self._cell["text"]:
            self._cell["text"] = data

    def board(self, section: str = "leaderboard") -> list[dict[str, dict]]:
        """The rows of the board tables in ``section``: column → cell, and the row's group."""
        rows = []
        for table in (t for t in self.tables if t["section"] == section):
            rows += [dict(zip(table["columns"], cells), group=table["group"]) for cells in table["rows"]]
        return rows


def report(tmp_path: Path, *inputs, **request) -> tuple[str, ParsedPage, object]:
    result = run_report(ReportRequest(list(inputs), out=tmp_path / "report.html", **request))
    text = result.path.read_text(encoding="utf-8")
    return text, ParsedPage(text), result


def test_report_has_every_section_and_each_figure_its_series(tmp_path):
    written = write_results(tmp_path / "results")
    text, page, result = report(tmp_path, written.folder)
    assert page.sections == SECTIONS
    assert result.rows == written.rows() and result.groups == 1 and result.bytes == len(text.encode())
    kinds = [f["kind"] for f in page.figures.values()]
    assert kinds == ["size", "severity", "heat-map"] + ["reliability"] * 4 + ["agreement"]
    assert [f.kind for f in result.figures] == kinds
    expected = {"size": 4, "severity": 6, "heat-map": 6, "agreement": 2}  # 4 models; the MC ones at 2 sweep sizes
    for number, figure in enumerate(page.figures.values(), start=1):
        assert sorted(figure["series"]) == list(range(figure["count"])), figure  # every series drawn and marked
        assert figure["count"] == expected.get(figure["kind"], figure["count"])
        assert figure["section"] == {"size": "ensemble-size", "severity": "corruptions", "heat-map": "corruptions",
                                     "reliability": "reliability", "agreement": "consistency"}[figure["kind"]]
    reliability = [f for f in page.figures.values() if f["kind"] == "reliability"]
    assert sorted(f["count"] for f in reliability) == [1, 1, 3, 3]  # dnn at size 1, MC dropout at 1, 5, 20
    assert set(page.figures["fig1"]["series"].values()) == set(written.models)
    assert page.scripts == 1 and all(link.startswith(("#", "data:")) for link in page.links)  # nothing loaded
    body = "".join(page.text)
    assert "1000 test images" in body and "torch" in body and str(written.eval) in body
    for svg in re.findall(r"<svg .*?</svg>", text, flags=re.S):
        ET.fromstring(svg)  # well-formed, and each id prefixed with its figure's id
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))


def test_page_values_equal_the_csv_values(tmp_path):
    written = write_results(tmp_path / "results")
    _, page, _ = report(tmp_path, written.folder)
    evals = pd.read_csv(written.eval)
    cells = pd.read_csv(written.corrupt)
    agreement = pd.read_csv(written.consistency)
    rows = page.board()
    assert len(rows) == len(evals)  # one leaderboard row per model and ensemble size
    checked = 0
    for row in rows:
        name, size = row["name"]["v"], int(row["ensemble_size"]["v"])
        expected = evals[(evals.model == name) & (evals.ensemble_size == size)].iloc[0]
        corrupted = cells[(cells.model == name) & (cells.ensemble_size == size) & (cells.severity > 0)]
        agreed = agreement[(agreement.model == name) & (agreement.ensemble_size == size)]
        values = {"acc": expected.acc, "nll": expected.nll, "ece": expected.ece, "brier": expected.brier,
                  "cAcc": corrupted.acc.mean() if len(corrupted) else math.nan,
                  "agreement": agreed.agreement.iloc[0] if len(agreed) else math.nan}
        for metric, value in values.items():
            cell = row[metric]
            if math.isnan(value):
                assert cell["v"] == "" and cell["text"] == "–"
                continue
            assert math.isclose(float(cell["v"]), value, rel_tol=1e-12), (name, size, metric)
            shown = f"{100 * value:.2f}" if metric in ("acc", "ece", "cAcc", "agreement") else f"{value:.4f}"
            assert cell["text"] == shown, (name, size, metric)
            checked += 1
    assert checked >= 4 * len(rows)
    best_nll = min(rows, key=lambda r: float(r["nll"]["v"]))
    assert best_nll["nll"]["best"] and sum(r["nll"]["best"] for r in rows) == 1
    assert [int(r["rank"]["v"]) for r in rows] == sorted(int(r["rank"]["v"]) for r in rows)  # ranked by nll


def test_hostile_and_non_ascii_names_are_shown_as_text(tmp_path):
    names = {("resnet18", "dnn", "none"): '<script>alert("x")</script>',
             ("resnet18", "dnn", "tanh-blur"): 'a"b\'c & <d>',
             ("resnet18", "mcdo", "none"): "Ünïcødé 模型 $x$",
             ("resnet18", "mcdo", "tanh-blur"): "_hidden"}
    written = write_results(tmp_path / "results", names=names)
    text, page, _ = report(tmp_path, written.folder)
    assert page.scripts == 1 and "<script>alert" not in text and "<d>" not in text
    body = "".join(page.text)
    for name in names.values():
        assert name in [r["name"]["v"] for r in page.board()]
        assert name in body
    assert "Ünïcødé 模型 $x$ (size 5)" in body  # drawn as plain text in the SVG legends (no mathtext)
    labels = {label for figure in page.figures.values() for label in figure["series"].values()}
    assert set(names.values()) <= labels
    assert re.search(r"<text[^>]*>_hidden</text>", text)  # a name starting with _ keeps its legend entry


def test_rows_of_other_settings_are_ranked_and_drawn_apart(tmp_path):
    first = write_results(tmp_path / "standard")
    second = write_results(tmp_path / "reference", extra={"ece_mode": "reference", "ece_bins": 10})
    _, page, result = report(tmp_path, first.eval, second.eval)
    assert result.groups == 2 and any("ranked separately as group 2" in n for n in result.notes)
    assert sorted({r["group"] for r in page.board()}) == [1, 2]
    titles = [t for t in page.text if t.startswith("Group ")]
    assert any("ece_mode=reference" in t for t in titles)
    sizes = [f for f in page.figures.values() if f["kind"] == "size"]
    assert len(sizes) == 2 and [f["count"] for f in sizes] == [4, 4]  # one figure per group, never mixed
    body = "".join(page.text)
    assert "No reliability bins were given" in body and "No corruption rows were given" in body


@pytest.mark.parametrize("kind, ranked_by, figures", [("consistency", "agreement", ["agreement"]),
                                                       ("corrupt", "cNLL", ["severity", "heat-map"]),
                                                       ("eval", "nll", ["size"])])
def test_one_kind_of_rows_alone_makes_a_report_ranked_by_what_it_has(tmp_path, kind, ranked_by, figures):
    written = write_results(tmp_path / "results")
    _, page, _ = report(tmp_path, getattr(written, kind))
    assert f"Ranked by {ranked_by} " in "".join(page.text)
    assert [f["kind"] for f in page.figures.values()] == figures


def test_bad_inputs_say_what_to_do_and_write_nothing(tmp_path):
    out = tmp_path / "report.html"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no smoothbench result tables found"):
        run_report(ReportRequest([empty], out=out))
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "prices.csv").write_text("item,price\napple,3\n")
    with pytest.raises(UserError, match="no smoothbench result tables found"):
        run_report(ReportRequest([unrelated], out=out))
    with pytest.raises(UserError, match="prices.csv is not a smoothbench result table"):
        run_report(ReportRequest([unrelated / "prices.csv"], out=out))
    bins = tmp_path / "m_cifar10_test_n1_reliability.csv"
    bins.write_text("bin,count\n0,3\n")
    with pytest.raises(UserError, match="named like a reliability table but has no column lower"):
        run_report(ReportRequest([bins], out=out))
    written = write_results(tmp_path / "results")
    with pytest.raises(UserError, match="only reliability tables or corruption summaries were given"):
        run_report(ReportRequest(written.reliability[:2], out=out))
    with pytest.raises(UserError, match="out must name an .html file"):
        ReportRequest([written.folder], out=tmp_path / "report.txt")
    (tmp_path / "folder.html").mkdir()
    with pytest.raises(UserError, match="folder.html is a folder"):
        run_report(ReportRequest([written.folder], out=tmp_path / "folder.html"))
    assert not out.exists()


def test_leaderboard_html_is_the_report_leaderboard_on_the_same_template():
    board = build_leaderboard(pd.DataFrame(THREE))
    page = to_html(board)
    section = re.search(r'<section id="leaderboard">.*?</section>', page, flags=re.S).group(0)
    alone = render_page("t", "s", [leaderboard_section(board)])
    assert section == re.search(r'<section id="leaderboard">.*?</section>', alone, flags=re.S).group(0)
    style = re.search(r"<style>.*?</style>", page, flags=re.S).group(0)
    assert style == re.search(r"<style>.*?</style>", alone, flags=re.S).group(0) and "@media print" in style
    parsed = ParsedPage(page)
    assert [r["name"]["v"] for r in parsed.board()] == list(board.table["name"])
    assert parsed.sections == ["leaderboard"] and parsed.figures == {}


@pytest.mark.slow
def test_cli_report_of_real_cli_files_and_its_one_line_error(tmp_path):
    """The golden files were written by the real commands (eval --plot, corrupt --generate, consistency)."""
    from conftest import ROOT, assert_one_line_error, run_cli

    out = tmp_path / "golden.html"
    proc = run_cli("report", ROOT / "tests" / "golden" / "expected", "--out", out, "--sort", "acc")
    printed = proc.stderr.replace("\n", "")  # the CLI's messages go to stderr, as for the leaderboard's path
    assert f"report: {out}" in printed and "ranked separately as group 2" in printed
    page = ParsedPage(out.read_text(encoding="utf-8"))
    kinds = [f["kind"] for f in page.figures.values()]
    assert kinds.count("reliability") == 1 and page.figures["fig1"]["count"] == 1  # golden-r18 at sizes 1, 2, 4
    assert [f["count"] for f in page.figures.values() if f["kind"] == "reliability"] == [3]
    assert {r["group"] for r in page.board()} == {1, 2}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_cli("report", empty, "--out", tmp_path / "r.html", check=False),
                          "no smoothbench result tables found")


def test_ood_shift_and_selective_rows_get_their_own_sections_ranked_by_their_own_metric(tmp_path):
    from smoothbench.results.store import write_rows
    from smoothbench.schema import OOD_ROW_KEY, SHIFT_ROW_KEY

    written = write_results(tmp_path / "results")
    evals = pd.read_csv(written.eval)
    evals["aurc"] = 0.2 - evals["acc"] / 10  # any number; the report must show exactly these
    evals.to_csv(written.eval, index=False)
    largest = evals.sort_values("ensemble_size").groupby("model").tail(1)
    ood, shift = [], []
    for i, (_, row) in enumerate(largest.iterrows()):
        base = row.drop(["acc", "nll", "ece", "brier", "aurc"], errors="ignore").to_dict()
        for score, auroc in (("msp", 0.70 + i / 100), ("energy", 0.90 - i / 100)):
            ood.append(base | {"ood_set": "svhn", "score": score, "auroc_ood": auroc, "aupr_in": 0.5, "aupr_out": 0.5,
                               "fpr95": 0.4, "n_ood": 26032})
        shift.append(row.to_dict() | {"shift": "cifar10.1", "acc": row["acc"] - 0.1, "data_fingerprint": "c101"})
    write_rows(tmp_path / "results" / "ood.csv", ood, key_columns=OOD_ROW_KEY)
    write_rows(tmp_path / "results" / "shift.csv", shift, key_columns=SHIFT_ROW_KEY)
    text, page, _ = report(tmp_path, written.folder)
    assert page.sections[:3] == ["about", "overview", "leaderboard"]
    assert page.sections[3:6] == ["selective", "ood", "shift"] and page.sections[6:] == SECTIONS[3:]

    selective = page.board("selective")
    assert sorted(float(r["aurc"]["v"]) for r in selective) == pytest.approx(sorted(evals["aurc"]))
    ranked = [r for r in page.board("ood")]
    assert len(ranked) == 2 * len(largest) and {r["group"] for r in ranked} == {1, 2}
    by_group = {}
    for r in ranked:
        by_group.setdefault(r["group"], []).append((int(r["rank"]["v"]), float(r["auroc_ood"]["v"])))
    for entries in by_group.values():  # higher AUROC ranks first, within one set and score
        assert [a for _, a in sorted(entries)] == sorted((a for _, a in entries), reverse=True)
    assert sorted(float(r["auroc_ood"]["v"]) for r in ranked) == pytest.approx(sorted(o["auroc_ood"] for o in ood))
    shifted = sorted(float(r["acc"]["v"]) for r in page.board("shift"))
    assert shifted == pytest.approx(sorted(largest["acc"] - 0.1))
    extra = text[text.index('<section id="all-metrics"'):]
    assert "auroc_ood" not in extra and "fpr95" not in extra  # OOD rows are never averaged over sets and scores
    assert any("OOD row(s)" in t for t in page.text)
