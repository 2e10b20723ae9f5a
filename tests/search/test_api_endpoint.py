"""A whole search on an API endpoint (`engine.kind: openai`): the stand-in engine started apart plays a hosted API
behind a key. Capacity at SLA is measured by the same levels, cost is the API's tokens per task (no hours), no
engine metrics are scraped from it, and the bundle is a client config."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from autotune.ops.export import export_bundle
from autotune.search.study import SearchOptions, run_search
from tests.stand_in import EXTRACTION_WORKLOAD, HERE, NullReporter, _study, write_items

KEY = "sk-search-api-test-0123456789"


@pytest.fixture
def api(monkeypatch):
    """api(fault) -> the URL of a stand-in API (the fake engine behind a key, FAKE_FAULTS `*:fault`)."""
    procs = []

    def start(fault: str = "") -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "VLLM_API_KEY": KEY, "FAKE_FAULTS": f"*:{fault}" if fault else ""}
        procs.append(subprocess.Popen([sys.executable, str(HERE / "fake_engine.py"), "--port", str(port),
                                       "--served-model-name", "hosted-model"], env=env, start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return f"http://127.0.0.1:{port}/v1"

    monkeypatch.setenv("SEARCH_API_KEY", KEY)
    yield start
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def _search(url: str, tmp_path, write, n_trials: int = 2) -> SearchOptions:
    """A capacity search of `n_trials` format choices on the API at `url`; its options."""
    write_items(tmp_path, 6)
    write("wl.yaml", EXTRACTION_WORKLOAD + """\
        load_protocol: capacity
        capacity: {start_rate: 2, tolerance: 1.0, max_levels: 2, level_s: 1.5, warmup_s: 0.2, min_tasks: 3}
        drain_timeout_s: 5
        request_timeout_s: 4
        stall_timeout_s: 2
        max_tokens: 40
        eval_items: 6
        """)
    space = write("space.yaml", f"""\
        name: s
        workload: wl.yaml
        engine: {{kind: openai, url: "{url}", model: hosted-model, api_key_env: SEARCH_API_KEY,
                  usd_per_1m_input: 2.0, usd_per_1m_output: 8.0, startup_timeout_s: 10}}
        knobs:
          output_format: {{choices: [json, yaml]}}
        sla: {{task_ms: 3000, attainment: 0.9}}
        search: {{n_trials: {n_trials}, sampler: grid, batch: 1, noise_repeats: 0}}
        """)
    opts = SearchOptions(space_file=space, run_dir=tmp_path / "runs")
    run_search(opts, NullReporter())
    return opts


@pytest.mark.parametrize("fault, sign", [("ratelimited", "HTTP 429"), ("stalls", "timed out"), ("spiky", None)])
def test_an_api_that_misbehaves_gives_failed_calls_with_reasons_never_a_hang(api, tmp_path, write, fault, sign):
    """429s are failed calls quoting the API's answer; a stalled stream ends at the request timeout; a latency
    spike is latency. The trial ends in bounded time, complete (its levels judged on what happened)."""
    started = time.monotonic()
    opts = _search(api(fault), tmp_path, write, n_trials=1)
    assert time.monotonic() - started < 120
    trial = _study(opts).trials[0]
    assert trial.state.name == "COMPLETE", trial.user_attrs.get("fail_message")
    records = [json.loads(line) for p in (tmp_path / "runs" / "s").rglob("requests*.jsonl")
               for line in p.read_text().splitlines() if line.strip()]
    errors = [r.get("error") or "" for r in records]
    if sign:
        assert any(sign in e for e in errors), sorted(set(errors))[:5]
    else:
        assert not any(e.startswith("HTTP") for e in errors)
        assert max(r.get("e2e_s") or 0 for r in records) >= 1.5, "the spike is in the latency"


def test_a_search_on_an_api_measures_capacity_and_prices_tokens(api, tmp_path, write):
    opts = _search(api(), tmp_path, write)
    study = _study(opts)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2, [(t.state.name, t.user_attrs.get("fail_message")) for t in study.trials]
    for t in done:
        m = t.user_attrs["metrics"]
        assert m["capacity_tps"] > 0 and m["usd_per_1k_tasks_hosted"] == 0.0
        want = 1000 * (m["input_tokens_per_task"] * 2.0 + m["output_tokens_per_task"] * 8.0) / 1e6
        assert m["usd_per_1k_tasks_api"] == pytest.approx(want) and m["usd_per_1k_tasks"] == pytest.approx(want)
        assert t.user_attrs["engine_version"] == "api:hosted-model"
        assert not any(k.startswith("server_") for k in m), "an API has no engine metrics to scrape"
    trial_dir = tmp_path / "runs" / "s" / f"trial-{done[0].number:04d}"
    assert not list(trial_dir.rglob("metrics-before.txt"))
    bundle, _, _ = export_bundle(study, "cheapest-within-quality", tmp_path / "exports")
    assert not (bundle / "serve.sh").exists()
    endpoint = yaml.safe_load((bundle / "endpoint.yaml").read_text())
    assert endpoint["model"] == "hosted-model" and endpoint["api_key_env"] == "SEARCH_API_KEY"
    assert KEY not in "".join(p.read_text() for p in bundle.iterdir() if p.suffix in (".json", ".yaml", ".md"))
    assert "Nothing to start" in (bundle / "README.md").read_text()


def test_a_judge_routed_to_an_api_beside_self_hosted_agents(api, setup, tmp_path):
    """Hybrid hosting in one trial: the agents on the launched engine, the judge on an API (route_judge). Only the
    routing changes between the two trials, so the engine keeps running; the judge's calls go to the API with its
    model and key, and the cost adds the API's tokens to the engine's hours."""
    knobs = ["architecture: {value: judge}", "judge_rounds: {value: 1}", "route_judge: {choices: [engine, api]}"]
    opts = setup("{value: 4}", sampler="grid", client="  " + ("\n" + " " * 14).join(knobs))  # the space's indent
    opts.space_file.write_text(opts.space_file.read_text() + f"""\
endpoints:
  api: {{kind: openai, url: "{api()}", model: hosted-model, api_key_env: SEARCH_API_KEY, usd_per_1m_input: 2.0,
         usd_per_1m_output: 8.0}}
""")
    run_search(opts, NullReporter())
    trials = {t.params["route_judge"]: t for t in _study(opts).trials}
    assert {k: t.state.name for k, t in trials.items()} == {"engine": "COMPLETE", "api": "COMPLETE"}
    assert sorted(t.user_attrs["metrics"]["engine_reused"] for t in trials.values()) == [0.0, 1.0]
    for route, t in trials.items():
        records = [json.loads(line) for line in
                   (tmp_path / "runs" / "s" / f"trial-{t.number:04d}" / "requests.jsonl").read_text().splitlines()]
        where = {(r["node"].split(".")[1], r["endpoint"]) for r in records if r.get("ok")}
        assert where == {("agent_a", "engine"), ("agent_b", "engine"), ("judge", route)}, where
        m = t.user_attrs["metrics"]
        assert m["usd_per_1k_tasks_hosted"] > 0, "the agents still run on the engine"
        assert (m["usd_per_1k_tasks_api"] > 0) == (route == "api")
        assert m["usd_per_1k_tasks"] == pytest.approx(m["usd_per_1k_tasks_hosted"] + m["usd_per_1k_tasks_api"])
    bundle, chosen, _ = export_bundle(_study(opts), "max usd_per_1k_tasks_api", tmp_path / "exports")
    assert chosen.params["route_judge"] == "api" and (bundle / "serve.sh").exists(), "the agents' engine ships"
    plan = yaml.safe_load((bundle / "routes.yaml").read_text())
    assert plan["judge"]["endpoint"] == "api" and plan["judge"]["api_key_env"] == "SEARCH_API_KEY"
    assert "SEARCH_API_KEY" in json.loads((bundle / "bundle.json").read_text())["required_env"]
    assert KEY not in "".join(p.read_text() for p in bundle.iterdir() if p.suffix in (".json", ".yaml", ".md", ".sh"))


def test_overflow_spills_the_engines_calls_to_an_api_while_the_engine_is_busy(api, setup):
    """overflow_to/overflow_at: a call for the engine goes to the API while the engine already owes one. With two
    users some calls overlap, so some spill; without overflow none does."""
    knobs = ["overflow_to: {choices: [engine, api]}", "overflow_at: {value: 1}"]
    opts = setup("{value: 4}", sampler="grid", client="  " + ("\n" + " " * 14).join(knobs))
    opts.space_file.write_text(opts.space_file.read_text() + f"""\
endpoints:
  api: {{kind: openai, url: "{api()}", model: hosted-model, api_key_env: SEARCH_API_KEY, usd_per_1m_output: 8.0}}
""")
    run_search(opts, NullReporter())
    for t in _study(opts).trials:
        assert t.state.name == "COMPLETE", t.user_attrs.get("fail_message")
        records = [json.loads(line) for line in (opts.run_dir / "s" / f"trial-{t.number:04d}" /
                                                 "requests.jsonl").read_text().splitlines()]
        where = {r["endpoint"] for r in records if r.get("ok")}
        spills = t.params["overflow_to"] == "api"
        assert where == ({"engine", "api"} if spills else {"engine"}), where
        assert (t.user_attrs["metrics"]["usd_per_1k_tasks_api"] > 0) == spills


def test_a_judge_on_a_second_self_hosted_engine(setup, tmp_path):
    """`endpoints.big` with `kind: vllm`: a second engine on its own fixed server part, launched the first time a
    route needs it, kept while the routes change, stopped with the search; its calls cost host hours, no tokens."""
    knobs = ["architecture: {value: judge}", "judge_rounds: {value: 1}", "route_judge: {choices: [engine, big]}"]
    opts = setup("{value: 4}", sampler="grid", client="  " + ("\n" + " " * 14).join(knobs))
    opts.space_file.write_text(opts.space_file.read_text() + f"""\
endpoints:
  big: {{kind: vllm, command: [{sys.executable}, {HERE / 'fake_engine.py'}], startup_timeout_s: 5,
         shutdown_timeout_s: 3, server: {{model: {tmp_path}, max_num_seqs: 8}}}}
""")
    run_search(opts, NullReporter())
    trials = {t.params["route_judge"]: t for t in _study(opts).trials}
    assert {k: t.state.name for k, t in trials.items()} == {"engine": "COMPLETE", "big": "COMPLETE"}
    for route, t in trials.items():
        trial_dir = opts.run_dir / "s" / f"trial-{t.number:04d}"
        records = [json.loads(line) for line in (trial_dir / "requests.jsonl").read_text().splitlines()]
        where = {(r["node"].split(".")[1], r["endpoint"]) for r in records if r.get("ok")}
        assert where == {("agent_a", "engine"), ("agent_b", "engine"), ("judge", route)}, where
        m = t.user_attrs["metrics"]
        assert m["usd_per_1k_tasks_hosted"] > 0 and m["usd_per_1k_tasks_api"] == 0.0
    argv = json.loads((opts.run_dir / "s" / f"trial-{trials['big'].number:04d}" / "engine-argv.json").read_text())
    assert "--max-num-seqs" in argv and argv[argv.index("--max-num-seqs") + 1] == "4", "the trial's own engine"
    assert not list((opts.run_dir / "engines").glob("*.json")), "both engines stopped with the search"
