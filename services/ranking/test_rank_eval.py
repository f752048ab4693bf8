"""`limelight rank eval` on a small synthetic interactions file (the CI run; MovieLens is for people)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from typer.testing import CliRunner

from tools.rank_cli import app


def write_interactions(path: Path) -> None:
    """Two taste groups over 40 items, with a time order, in the documented CSV shape."""
    chooser = random.Random(5)
    lines = ["user,item,timestamp,weight"]
    for user in range(60):
        group = user % 2
        for step in range(15):
            item = chooser.randrange(20) + 20 * group if chooser.random() < 0.85 else chooser.randrange(40)
            lines.append(f"u{user},i{item},{user * 100 + step},{chooser.choice((3, 4, 5))}")
    path.write_text("\n".join(lines) + "\n")


def test_eval_prints_a_table_and_writes_json_for_every_model(tmp_path: Path) -> None:
    data, out = tmp_path / "interactions.csv", tmp_path / "results.json"
    write_interactions(data)
    result = CliRunner().invoke(app, ["eval", "--interactions", str(data), "--out", str(out), "--quick"])
    assert result.exit_code == 0, result.output
    assert "NDCG@10" in result.output and "ours / tuned ALS" in result.output
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"popularity", "ALS", "BPR", "ours", "ours (service defaults)"}
    for model in results.values():
        assert all(0.0 <= value <= 1.0 for value in model["test"].values())
    # Two clear taste groups: the ranker must find them better than popularity does.
    assert results["ours"]["test"]["ndcg@10"] > results["popularity"]["test"]["ndcg@10"]
