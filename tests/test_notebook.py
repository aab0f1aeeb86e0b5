"""The analysis notebook runs top to bottom on a small set of records."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient
from test_analysis import write_run

from analysis import __main__ as cli

NOTEBOOK = Path(__file__).resolve().parent.parent / "analysis" / "roadmap.ipynb"


def test_notebook_runs_on_a_fixture(tmp_path, monkeypatch):
    for step in ["resnet", "modern_recipe", "kernel5"]:
        for seed in (0, 1):
            write_run(tmp_path / "runs", "fashion_mnist", step, seed)
    cli.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    monkeypatch.setenv("ROADMAP_RESULTS", str(tmp_path / "out" / "results.csv"))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3  # roadmap, accuracy vs GFLOPs, curves
    markdown = [o.get("data", {}).get("text/markdown", "") for o in outputs]
    assert any("top-1 (%) test, mean ± 95% CI over n seeds" in text for text in markdown)
    assert any("Calibration against the paper" in text for text in markdown)
