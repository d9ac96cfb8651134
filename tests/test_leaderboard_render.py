"""Rendering leaderboards: one self-contained HTML page, JSON that round-trips, markdown with percents."""

from __future__ import annotations

import io
import json
import math
from html.parser import HTMLParser

import pandas as pd

from board_rows import THREE, eval_row
from smoothbench.leaderboard import build_leaderboard
from smoothbench.leaderboard.render import to_csv, to_html, to_json, to_markdown


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.links: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [(k, v) for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data):
        self.text.append(data)


def test_html_is_one_self_contained_sortable_page():
    rows = THREE + [eval_row("<b>bold</b> & co", "resnet50", "x1", acc=0.5, nll=2.0)]
    page = _Page()
    page.feed(to_html(build_leaderboard(pd.DataFrame(rows))))
    page.close()
    text = "".join(page.text)
    for name in ("alpha", "beta", "gamma", "<b>bold</b> & co"):
        assert name in text
    assert "script" in page.tags and "style" in page.tags and page.tags.count("table") == 1
    assert "b" not in page.tags  # the name was escaped, not rendered as markup
    assert all(value.startswith("data:") for _, value in page.links)  # no external resources (the icon is inline)
    assert "93.00" in text and "0.3000" in text  # acc in percent, nll raw


def test_json_round_trips_and_markdown_formats_percents():
    rows = [eval_row("r18-s0", "resnet18", "s0", acc=0.90, nll=0.30, seed=0),
            eval_row("r18-s1", "resnet18", "s1", acc=0.94, nll=0.34, seed=1),
            eval_row("vgg", "vgg16", "v0", acc=0.80, nll=0.50, ece_mode="reference")]
    board = build_leaderboard(pd.DataFrame(rows), sort="acc")
    document = json.loads(to_json(board))
    assert document["sort"] == "acc" and document["notes"] == board.notes and document["groups"] == board.groups
    models = document["models"]
    assert [m["name"] for m in models] == list(board.table["name"])
    for model, (_, row) in zip(models, board.table.iterrows()):
        assert model["clean_acc"] == row["acc"] and model["nll"] == row["nll"]
        assert model["metrics"]["acc_std"] == (None if math.isnan(row["acc_std"]) else row["acc_std"])
        assert model["seeds"] == row["n_seeds"] and model["architecture"] == row["arch"]
        assert model["corruptions_acc"] is None and model["provenance"]["ece_mode"] == row["ece_mode"]
    assert json.loads(json.dumps(document)) == document
    markdown = to_markdown(board)
    assert "percentages" in markdown and "2 decimals" in markdown
    assert "| 1 | resnet18-dnn (dropout_rate=0) | 1 | 2 | 92.00 ± 2.83 | 0.3200 ± 0.0283 |" in markdown
    assert "## Group 2" in markdown and "ranked separately as group 2" in markdown
    csv_back = pd.read_csv(io.StringIO(to_csv(board)))
    assert list(csv_back["name"]) == list(board.table["name"]) and "model" not in csv_back.columns
