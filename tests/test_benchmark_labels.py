"""benchmarks/ablation_seed.py labels its list of ranked heads by how many it shows (the largest
--ks value, in whatever order the values were given)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ablation_seed_names_the_ranked_heads_it_prints(fixture_dir, capsys):
    spec = importlib.util.spec_from_file_location("ablation_seed", ROOT / "benchmarks" / "ablation_seed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--weights", str(fixture_dir / "checkpoint.pth"), "--draws", "2", "--modes", "zero",
                       "--ks", "5", "2"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("unablated MAE"))
    label, heads = line.split("; ", 1)[1].split(": ", 1)
    assert label == "top-5 ranked heads" and len(heads.split(", ")) == 5
