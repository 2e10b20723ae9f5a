"""benchmarks/hybrid.py mechanics on the stand-in engine: the strong model is a second self-hosted endpoint, the
six plans run as one study, and the report has a row per plan with its paired quality against the strong one-call
plan."""

from __future__ import annotations

import sys

from tests.conftest import load_benchmark
from tests.stand_in import EXTRACTION_WORKLOAD, FIXED_LOAD, HERE, write_items

hybrid = load_benchmark("hybrid")


def test_the_plans_run_as_one_study_and_the_report_compares_them(tmp_path, write):
    write_items(tmp_path, 5)
    write("wl.yaml", EXTRACTION_WORKLOAD + FIXED_LOAD)
    space = write("space.yaml", f"""\
        name: base
        workload: wl.yaml
        engine:
          command: [{sys.executable}, {HERE / 'fake_engine.py'}]
          startup_timeout_s: 5
          shutdown_timeout_s: 3
        hardware: {{name: test box, usd_per_hour: 0.36}}
        knobs:
          model: {{value: {tmp_path}}}
          max_num_seqs: {{choices: [2, 4]}}
          output_format: {{choices: [json, yaml]}}
        search:
          enqueue:
            - {{max_num_seqs: 4, output_format: yaml}}
        """)
    out = tmp_path / "report" / "hybrid.md"
    code = hybrid.main(["--space", str(space), "--strong", str(tmp_path), "--small", str(tmp_path),
                        "--run-dir", str(tmp_path / "runs"), "--out", str(out)])
    assert code == 0
    text = out.read_text()
    for name, _ in hybrid.PLANS:
        assert f"| {name} |" in text, text
    assert "failed" not in text and out.with_suffix(".png").is_file()
    import optuna

    study = optuna.load_study(study_name="hybrid", storage=f"sqlite:///{tmp_path / 'runs' / 'optuna.db'}")
    rows = {r["plan"]: r for r in hybrid.rows_of(study)}
    assert all(r["usd_per_1k_tasks_hosted"] > 0 and r["usd_per_1k_tasks_api"] == 0 for r in rows.values()), rows
    space = (tmp_path / "runs" / "hybrid-space.yaml").read_text()
    assert "output_format:\n    value: yaml" in space, "the base space's warm start is the plans' application"
    assert "cpu_threads_bind: '1'" in space and "cpu_threads_bind:\n    value: '0'" in space, "a core each"
    assert not list((tmp_path / "runs" / "engines").glob("*.json")), "both engines stopped with the search"
