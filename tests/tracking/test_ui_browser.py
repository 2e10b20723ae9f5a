"""A fake-engine study seen in MLflow's real UI: a throwaway `mlflow ui` on the study's store, driven by headless
Chromium (Debian's package) through Playwright. The runs table lists the trial runs, and a trial's Traces tab lists
its traces. Screenshots are kept in the test's tmp dir, and in $AUTOTUNE_SCREENSHOTS when set.

Skipped only where /usr/bin/chromium is absent and AUTOTUNE_REQUIRE_BROWSER is unset (CI sets it: there a missing
browser fails)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import load_benchmark
from tests.stand_in import NullReporter, _mlflow_runs

if not Path("/usr/bin/chromium").exists() and not os.environ.get("AUTOTUNE_REQUIRE_BROWSER"):
    pytest.skip("no /usr/bin/chromium (apt-get install chromium; AUTOTUNE_REQUIRE_BROWSER=1 makes this a failure)",
                allow_module_level=True)


ui = load_benchmark("ui_screenshots")


def _keep(path: Path) -> None:
    out = os.environ.get("AUTOTUNE_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(out) / path.name)


def test_runs_table_and_traces_tab_in_mlflow_ui(setup, tmp_path):  # noqa: F811
    from autotune.search.study import run_search
    from autotune.tracking.mlflow_tracker import latest_study_url
    from autotune.tracking.views import runs_table_url

    opts = setup("{choices: [2, 4]}", n_trials=2)
    assert run_search(opts, NullReporter()).trials_complete == 2
    client, runs = _mlflow_runs(opts)
    eid = runs[0].info.experiment_id
    trials = sorted((r for r in runs if r.data.tags.get("autotune.role") == "trial"), key=lambda r: r.info.run_name)
    assert [r.info.run_name.split(" ")[0] for r in trials] == ["trial-000", "trial-001"]
    trial = trials[0]
    ids = [t.info.trace_id for t in client.search_traces(locations=[eid], run_id=trial.info.run_id)]
    assert ids
    shots = tmp_path / "screenshots"

    uri = f"sqlite:///{(opts.run_dir / 'mlflow.db').resolve()}"
    with ui.mlflow_ui(uri, tmp_path / "mlflow-ui.log") as base, ui.browser() as page:
        # the runs table, trials flat: both trial runs are listed (by their names; not the parent)
        link = latest_study_url(uri)  # what `autotune ui` prints
        assert link == runs_table_url(eid)
        ui.show_runs_table(page, base, link, ["trial-000", "trial-001"])
        ui.widen_run_names(page)  # the names carry the objective values
        _keep(ui.shot(page, shots / "runs-table.png"))
        assert page.get_by_text("study:s").count() == 0, "the filter leaves the parent out"
        page.get_by_text("2 matching runs").first.wait_for(state="visible")
        # a trial's Traces tab lists its traces (by id); the first opens on its span tree
        ui.show_traces(page, base, eid, trial.info.run_id, ids)
        _keep(ui.shot(page, shots / "trial-traces.png"))
        ui.show_traces(page, base, eid, trial.info.run_id, ids[:1], open_first=True, span="call.all")
        assert f"selectedEvaluationId={ids[0]}" in page.url
        _keep(ui.shot(page, shots / "trial-trace-open.png"))
    for name in ("runs-table.png", "trial-traces.png", "trial-trace-open.png"):
        assert (shots / name).stat().st_size > 10_000, name
