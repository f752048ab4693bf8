"""`limelight rank`: ranking's offline tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.callback()
def rank() -> None:
    """Ranking tools: offline evaluation of the feed ranker."""


@app.command("eval")
def evaluate(
    interactions: Annotated[Path | None, typer.Option(
        help="CSV with header user,item,timestamp[,weight]; default: MovieLens-100k from the recbole wheel.")] = None,
    out: Annotated[Path, typer.Option(help="Where to write the results as JSON.")] = Path("rank-eval.json"),
    quick: Annotated[bool, typer.Option(help="One setting per model instead of the tuning grids (CI).")] = False,
) -> None:
    """Popularity, tuned ALS, BPR and our ranker on a temporal split: NDCG@10, Recall@50, coverage."""
    from tools.rank_eval import FULL_GRID, QUICK_GRID, movielens_path, run

    results = run(interactions or movielens_path(), grid=QUICK_GRID if quick else FULL_GRID, log=typer.echo)
    out.write_text(json.dumps(results, indent=2))
    typer.echo(f"results written to {out}")
