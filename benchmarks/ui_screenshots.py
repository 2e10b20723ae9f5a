"""Screenshots of a study in MLflow's UI, taken by headless Chromium (Debian's `chromium`, driven by Playwright).

    .venv/bin/python benchmarks/ui_screenshots.py --run-dir runs --study quickstart --out reports/ui

Starts a throwaway `mlflow ui` on the study's store (loopback, a free port, its own process group, killed at the
end) and saves four PNGs into --out: 1-runs-table.png (the trial runs, the link `autotune ui` prints),
2-study-run.png (the parent run and its description: the front), 3-compare.png (the compare view on the front,
the parent's `autotune.compare_url`), 4-trial-traces.png (a trial run's Traces tab, its first trace opened).

The helpers here (mlflow_ui, browser, the page steps) are shared with tests/tracking/test_ui_browser.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from autotune.tracking.views import runs_table_url

CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright's own browser download is not needed
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000  # a heavy single-page app on a small, maybe busy, box (a cold first load took 40 s)
# MLflow's assistant panel opens itself on a first visit from loopback and takes a third of the page
NO_ASSISTANT = """try { localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
                    localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false'); } catch (e) {}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_ui(uri: str, log: Path, timeout_s: float = 120.0) -> Iterator[str]:
    """`mlflow ui` on the store `uri` at a free loopback port; yields its base URL once /health answers. The
    server runs in its own process group, which is killed on the way out (the server and its workers only)."""
    port = free_port()
    argv = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1"]
    base = f"http://127.0.0.1:{port}"
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow ui exited with {proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow ui did not answer /health in {timeout_s:.0f} s; see {log}")
            time.sleep(0.3)
        yield base
    finally:
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)  # the group the server leads (start_new_session): its workers too
        except ProcessLookupError:
            break
        try:
            proc.wait(wait_s)
            if sig == signal.SIGTERM:  # the leader is gone; workers left behind get the SIGKILL
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            break
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def browser(width: int = 1600, height: int = 1000) -> Iterator:
    """A Playwright page in headless Debian Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            context = b.new_context(viewport={"width": width, "height": height})
            context.set_default_timeout(TIMEOUT_MS)
            context.add_init_script(NO_ASSISTANT)
            yield context.new_page()
        finally:
            b.close()


def goto(page, base: str, route: str) -> None:
    page.goto(f"{base}/{route}", wait_until="domcontentloaded")


def show_runs_table(page, base: str, route: str, run_names: list[str]) -> None:
    """Open a runs-table route and wait until every one of `run_names` is listed (a name is the start of its
    row's text: finished trials carry their objective values after it)."""
    goto(page, base, route)
    for name in run_names:
        page.get_by_text(name).first.wait_for(state="visible")


def widen_run_names(page, by_px: int = 380) -> None:
    """Drag the runs table's Run Name column wider (trial names carry their objective values); best effort."""
    with contextlib.suppress(Exception):
        box = page.locator(".ag-header-cell", has_text="Run Name").first.bounding_box(timeout=5_000)
        x, y = box["x"] + box["width"] - 2, box["y"] + box["height"] / 2  # its resize handle, on the right edge
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + by_px, y, steps=10)
        page.mouse.up()


def show_run(page, base: str, experiment_id: str, run_id: str, text: str = "") -> None:
    """A run's overview page, waiting for its Description and, for a while, `text` (a line of the description as
    rendered: a markdown line may render otherwise than guessed, which only shortens the wait)."""
    goto(page, base, f"#/experiments/{experiment_id}/runs/{run_id}")
    page.get_by_text("Description", exact=True).first.wait_for(state="visible")
    if text:
        with contextlib.suppress(Exception):
            page.get_by_text(text).first.wait_for(state="visible", timeout=10_000)
    with contextlib.suppress(Exception):  # a long description is folded: unfold it
        page.get_by_text("Show more", exact=True).first.click(timeout=3_000)


def show_traces(page, base: str, experiment_id: str, run_id: str, trace_ids: list[str], open_first: bool = False,
                span: str = "") -> None:
    """A run's Traces tab, waiting until every one of `trace_ids` is listed (the table's first column); with
    `open_first`, click the first one and wait for `span` in its span tree."""
    goto(page, base, f"#/experiments/{experiment_id}/runs/{run_id}/traces")
    for trace_id in trace_ids:
        page.get_by_text(trace_id, exact=True).first.wait_for(state="visible")
    if open_first:
        page.get_by_text(trace_ids[0], exact=True).first.click()
        page.get_by_text(span, exact=True).first.wait_for(state="visible")


def show_compare(page, base: str, route: str, metrics: tuple[str, ...] = ()) -> None:
    """MLflow's compare view (`#/compare-runs?runs=[...]&experiments=[...]`), waiting for its runs' ids; its
    parallel-coordinates plot then also shows `metrics` (best effort; the view's own pick, the first metric by name,
    stays: its selection is UI state, not part of the link)."""
    goto(page, base, route)
    query = urllib.parse.parse_qs(route.split("?", 1)[1])
    page.get_by_text(re.compile(r"Comparing \d+ Runs?")).first.wait_for(state="visible")
    for run_id in json.loads(query["runs"][0]):
        page.get_by_text(run_id, exact=True).first.wait_for(state="visible")
    with contextlib.suppress(Exception):  # its plot is drawn late (plotly loads lazily); a shot without it still helps
        page.locator(".js-plotly-plot").first.wait_for(state="visible")
    if not metrics:
        return
    with contextlib.suppress(Exception):
        box = page.get_by_text("Metrics:", exact=True).first.locator("xpath=following::*[contains(@class,'select')][1]")
        for metric in metrics:
            box.click(timeout=3_000)
            page.keyboard.type(metric)
            page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        page.wait_for_timeout(1_000)


def shot(page, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(500)  # let the last fetches paint
    page.screenshot(path=str(path), full_page=False)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs", type=Path)
    ap.add_argument("--study", default="quickstart")
    ap.add_argument("--mlflow-uri", default=None, help="default: sqlite under --run-dir")
    ap.add_argument("--out", default=Path("reports/ui"), type=Path)
    ap.add_argument("--trial", default=None, type=int, help="the trial whose traces are shown (default: the first "
                                                            "with traces)")
    args = ap.parse_args()
    from mlflow import MlflowClient

    uri = args.mlflow_uri or f"sqlite:///{(args.run_dir / 'mlflow.db').resolve()}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(args.study)
    if exp is None:
        sys.exit(f"no experiment {args.study!r} in {uri}")
    eid = exp.experiment_id
    runs = client.search_runs([eid], max_results=5000)
    parent = next((r for r in runs if r.data.tags.get("autotune.role") == "study"), None)
    if parent is None:
        sys.exit(f"no study run (tag autotune.role=study) in experiment {args.study!r}")
    trials = sorted((r for r in runs if r.data.tags.get("autotune.role") == "trial"),
                    key=lambda r: int(r.data.tags.get("autotune.trial", "0")))
    picked = [r for r in trials if args.trial is None or r.data.tags.get("autotune.trial") == str(args.trial)]
    best = None  # the tail (slowest) task with the richest span tree, over the picked trials
    for trial in picked:
        for info in client.search_traces(locations=[eid], run_id=trial.info.run_id, max_results=20):
            spans = client.get_trace(info.info.trace_id).data.spans
            key = (info.info.tags.get("autotune.sample") == "tail", len(spans))
            if best is None or key > best[0]:
                best = (key, trial, info, spans)
    if best is None:
        sys.exit("no trial run with traces")
    _, trial, trace, spans = best
    traces = [trace]
    span = next((sp.name for sp in spans if sp.parent_id is not None), spans[0].name)  # one of the span tree's
    note = parent.data.tags.get("mlflow.note.content", "")
    # the description's first line as the UI renders its markdown (a heading; `code` spans lose their backticks)
    lines = [re.sub(r"[#`*]", "", ln).strip() for ln in note.splitlines()]
    first_line = next((ln for ln in lines if ln), "")
    args.out.mkdir(parents=True, exist_ok=True)
    log = Path(tempfile.mkdtemp(prefix="mlflow-ui-")) / "mlflow-ui.log"  # the server's output, kept out of --out
    with mlflow_ui(uri, log) as base, browser() as page:
        show_runs_table(page, base, runs_table_url(eid), [t.info.run_name.split(" ")[0] for t in trials[:3]])
        widen_run_names(page)
        print(shot(page, args.out / "1-runs-table.png"), f"{base}/{runs_table_url(eid)}")
        show_run(page, base, eid, parent.info.run_id, first_line)
        print(shot(page, args.out / "2-study-run.png"))
        compare = parent.data.tags.get("autotune.compare_url")
        if compare:
            objectives = re.findall(r"(\w+) \((?:minimize|maximize)\)", note)  # the description's objectives line
            show_compare(page, base, compare, tuple(objectives))
            print(shot(page, args.out / "3-compare.png"), f"{base}/{compare}")
        show_traces(page, base, eid, trial.info.run_id, [traces[0].info.trace_id], open_first=True, span=span)
        print(shot(page, args.out / "4-trial-traces.png"))


if __name__ == "__main__":
    main()
