"""benchmarks/outcome.py and benchmarks/roofline.py mechanics: the defaults side gives vLLM only the model (and the
served name, host, port; on CPU the KV env it needs to start), the outcome core measures both sides on the fake
engine with the capacity protocol and computes the ratios from what it measured, and the roofline sizes a tiny
synthetic safetensors model at fp32, bf16 and int8. No timing assertions."""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path

import pytest

from autotune.config.knobs import ClientConfig, ServerConfig, TrialConfig
from autotune.config.space import load_space
from autotune.engines.vllm import build_argv, build_env
from tests.conftest import REPO, load_benchmark
from tests.stand_in import EXTRACTION_WORKLOAD, HERE, write_items

outcome = load_benchmark("outcome")
roofline = load_benchmark("roofline")


def test_the_defaults_side_gives_vllm_only_the_model():
    space = load_space(REPO / "search_spaces" / "quickstart.yaml", check_paths=False)
    server = outcome.defaults_server(space)
    argv = build_argv(server, space.engine, 8123)
    flags = outcome.flags(argv, space.engine.launcher())
    assert flags[0::2] == ["--model", "--served-model-name", "--host", "--port"], flags
    assert flags[1::2][1:] == ["smollm2-135m", "127.0.0.1", "8123"]
    assert flags[1].endswith("smollm2-135m")  # the plain model, not the w8a8 variant the space can pick
    # CPU: only the KV space vLLM-CPU needs to start, plus the tuner's own dev-mode switch (the space's env is {})
    assert build_env(server, space.engine) == {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_SERVER_DEV_MODE": "1"}
    shown = outcome.describe(space, server)
    assert shown["flags"][-2:] == ["--port", "<port>"] and set(shown["env"]) == {"VLLM_CPU_KVCACHE_SPACE",
                                                                                  "VLLM_SERVER_DEV_MODE"}
    # the naive baseline's application: as a developer first writes it, then --baseline-client
    client = outcome.naive_client(space, outcome.NAIVE_APP)
    assert (client.architecture, client.output_format, client.constrained, client.repair, client.prompt_variant,
            client.semantic_cache) == ("one_call", "json", "none", "none", "zero_shot", False)
    changed = outcome.naive_client(space, outcome.NAIVE_APP, outcome.parse_client("output_format=yaml"))
    assert (changed.output_format, changed.prompt_variant, changed.architecture) == ("yaml", "zero_shot", "one_call")
    with pytest.raises(SystemExit):
        outcome.parse_client("max_num_seqs=4")  # a server knob is not the application's
    # on a GPU space: no KV env at all
    gpu = space.model_copy(update={"engine": space.engine.model_copy(update={"device": "cuda"})})
    assert outcome.defaults_server(gpu).kv_cache_space_gb is None
    assert "VLLM_CPU_KVCACHE_SPACE" not in build_env(outcome.defaults_server(gpu), gpu.engine)


def test_the_recommended_config_comes_from_a_bundle(tmp_path):
    config = TrialConfig(server=ServerConfig(model="smollm2-135m", max_num_seqs=16), client=ClientConfig(repair="cpu"))
    (tmp_path / "bundle.json").write_text(json.dumps({"study": "s", "trial": 3, "policy": "knee", "rule": "r",
                                                      "server": config.server.model_dump(),
                                                      "client": config.client.model_dump()}))
    got, source = outcome.from_bundle(tmp_path)
    assert got == config and "trial 3" in source


@pytest.fixture
def fake_space(tmp_path, write):
    write_items(tmp_path, 6)
    write("wl.yaml", EXTRACTION_WORKLOAD + """\
        load_protocol: capacity
        capacity: {start_rate: 2, tolerance: 1.0, max_levels: 2, level_s: 1.5, warmup_s: 0.2, min_tasks: 3}
        drain_timeout_s: 5
        max_tokens: 40
        eval_items: 6
        """)
    return write("space.yaml", f"""\
        name: o
        workload: wl.yaml
        engine:
          command: [{sys.executable}, {HERE / 'fake_engine.py'}]
          startup_timeout_s: 10
          shutdown_timeout_s: 3
        hardware: {{name: test box, usd_per_hour: 0.36}}
        knobs:
          model: {{value: {tmp_path}}}
          kv_cache_space_gb: {{value: 1}}
          max_num_seqs: {{choices: [2, 4]}}
          architecture: {{choices: [one_call, parallel]}}
          repair: {{choices: [none, cpu]}}
        sla: {{task_ms: 3000, attainment: 0.9}}
        search:
          enqueue:
            - {{max_num_seqs: 4, architecture: one_call, repair: cpu}}
        """)


def test_the_outcome_core_measures_every_side_and_each_pair(fake_space, tmp_path):
    """Three sides, two windows each on fresh engines: each pair's capacity ratio comes with an interval from the
    pooled launch noise, the verdict is against the naive baseline, and the report has every pair."""
    from types import SimpleNamespace

    from autotune.search.inputs import trial_inputs
    from autotune.search.study import SearchOptions, load_inputs

    space, workload, wl_file = load_inputs(SearchOptions(space_file=fake_space))
    inputs = trial_inputs(space, workload, wl_file)
    config = TrialConfig(server=ServerConfig(model=str(tmp_path), max_num_seqs=4, kv_cache_space_gb=1),
                         client=ClientConfig(architecture="parallel", repair="cpu"))
    args = SimpleNamespace(baselines="both", baseline_model=None, baseline_client=None)
    sides = outcome.build_sides(space, config, "test", args)
    assert [s.name for s in sides] == ["naive", "defaults", "recommended"]
    assert sides[1].config.client == config.client and sides[1].config.server == sides[0].config.server
    assert sides[0].config.client.architecture == "one_call" and sides[0].config.client.repair == "none"
    lines: list[str] = []
    runs = outcome.measure_outcome(sides, inputs, tmp_path / "out", windows=2, say=lines.append)
    assert [line.split(":")[0] for line in lines] == ["naive-0", "defaults-0", "recommended-0", "naive-1",
                                                      "defaults-1", "recommended-1"], "in turn: ABCABC"
    assert all(len(r.windows) == 2 and all(w.ok for w in r.windows) for r in runs), lines
    # the defaults engines really were launched with the model, served name, host and port only
    for run in runs[:2]:
        launched = outcome.flags(run.argv, space.engine.launcher())
        assert launched[0::2] == ["--model", "--served-model-name", "--host", "--port"]
        assert run.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert "--max-num-seqs" in outcome.flags(runs[2].argv, space.engine.launcher())

    summary = outcome.summarize(runs, space, tolerance=1.0)
    for side in summary["sides"].values():
        assert side["capacity_tps"] > 0 and len(side["capacity_windows"]) == 2
        assert 0 <= side["quality"] <= 1 and len(side["items"]) == 6 and side["startup_s"] > 0
        assert side["usd_per_1k_tasks"] == pytest.approx(0.36 / 3.6 / side["capacity_tps"])
    assert list(summary["comparisons"]) == ["recommended/naive", "recommended/defaults", "defaults/naive"]
    for key, c in summary["comparisons"].items():
        side, base = (summary["sides"][n] for n in key.split("/"))
        geo = math.prod(side["capacity_windows"]) ** 0.5 / math.prod(base["capacity_windows"]) ** 0.5
        assert c["capacity_ratio"] == pytest.approx(geo)
        assert c["capacity_low"] < c["capacity_ratio"] < c["capacity_high"], "noise floored at the resolution"
        assert c["paired_quality"]["n"] == 6
        assert c["paired_quality"]["delta"] == pytest.approx(side["quality"] - base["quality"])
    goal = summary["comparisons"]["recommended/naive"]
    assert summary["goal_base"] == "naive"
    assert summary["goal_met"] == (goal["capacity_ratio"] >= 3 and goal["quality_ok"])
    assert "goal >= 3x the naive baseline's capacity at quality not worse" in summary["verdict"]
    described = {s.name: outcome.describe(space, s.config.server) for s in sides}
    text = outcome.render(summary, described, {"created": "now", "space": "s", "workload": "w", "engine_version":
                                               "fake-0", "eval_items": 6, "out_dir": "o"})
    assert "defaults = the minimum that starts" in text and summary["verdict"] in text
    assert "| recommended/defaults | the engine" in text and "| defaults/naive | the application" in text


def test_a_side_that_measured_nothing_is_not_judged():
    from autotune.measure.regression import Window

    space = load_space(REPO / "search_spaces" / "quickstart.yaml", check_paths=False)
    config = TrialConfig(server=ServerConfig(), client=ClientConfig())
    ok = Window("recommended-0", {"capacity_tps": 2.0, "p95_task_ms_at_load": 900.0, "startup_s": 30.0,
                                  "quality": 1.0}, {"a": 1.0, "b": 1.0})
    runs = [outcome.SideRun(outcome.Side("naive", config, ""), [Window("naive-0", failure="oom: no memory")]),
            outcome.SideRun(outcome.Side("recommended", config, ""), [ok])]
    summary = outcome.summarize(runs, space)
    assert summary["goal_met"] is None and "not judged: naive measured no window" in summary["verdict"]
    assert math.isnan(summary["comparisons"]["recommended/naive"]["capacity_ratio"])


def _safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]], config: dict) -> Path:
    """A safetensors file whose header lists `tensors` (zero-filled data), and a config.json."""
    path.mkdir(parents=True, exist_ok=True)
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * roofline.STORED_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    (path / "model.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(offset))
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_roofline_bytes_per_step_at_the_served_dtype(tmp_path):
    cfg = {"torch_dtype": "bfloat16", "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
           "hidden_size": 8, "tie_word_embeddings": True}
    bf16 = _safetensors(tmp_path / "bf16", {
        "model.embed_tokens.weight": ("BF16", [32, 8]),  # tied: also the lm_head
        "model.layers.0.self_attn.q_proj.weight": ("BF16", [8, 8]),
        "model.layers.0.mlp.down_proj.weight": ("BF16", [8, 16]),
        "model.layers.0.input_layernorm.weight": ("BF16", [8]),
        "model.norm.weight": ("BF16", [8]),
    }, cfg)
    linear, norms, embed = 8 * 8 + 8 * 16, 16, 32 * 8
    b = roofline.step_bytes(bf16, "bfloat16")
    assert b["tied"] and b["per_step"]["linear"] == 2 * linear and b["per_step"]["norm"] == 2 * norms
    assert b["per_step"]["lm_head"] == 2 * embed  # the logits read the table once; the lookup only rows
    assert b["weights_per_step"] == 2 * (linear + norms + embed) and b["embed_row"] == 2 * 8
    assert roofline.per_step_bytes(b, 4) == b["weights_per_step"] + 4 * 16
    f32 = roofline.step_bytes(bf16, "float32")
    assert f32["weights_per_step"] == 2 * b["weights_per_step"]  # fp32 serving of bf16 weights doubles them
    assert roofline.step_bytes(bf16, "auto")["weights_per_step"] == b["weights_per_step"]  # the checkpoint's dtype
    assert b["kv_per_token"] == 2 * 1 * 1 * 4 * 2  # K and V x layers x KV heads x head dim x bf16

    int8 = _safetensors(tmp_path / "int8", {
        "model.embed_tokens.weight": ("BF16", [32, 8]),
        "model.layers.0.self_attn.q_proj.weight": ("I8", [8, 8]),
        "model.layers.0.self_attn.q_proj.weight_scale": ("BF16", [8, 1]),
        "model.layers.0.mlp.down_proj.weight": ("I8", [8, 16]),
        "model.layers.0.mlp.down_proj.weight_scale": ("BF16", [8, 1]),
        "model.layers.0.input_layernorm.weight": ("BF16", [8]),
        "model.norm.weight": ("BF16", [8]),
        "lm_head.weight": ("BF16", [32, 8]),  # untied: its own tensor, read once; the table only by rows
    }, {**cfg, "tie_word_embeddings": False})
    q = roofline.step_bytes(int8, "float32")
    assert not q["tied"] and q["per_step"]["linear"] == linear  # int8 weights stay 1 byte at fp32 serving
    assert q["per_step"]["quant_scale"] == 4 * 16 and q["per_step"]["norm"] == 4 * norms
    assert q["per_step"]["lm_head"] == 4 * embed and q["weights_per_step"] == linear + 4 * (16 + norms + embed)


def test_roofline_bound_and_bandwidth_run():
    rl = roofline.roofline(10.0, 1e9, 1e3, tokens_per_s=20.0, batch=4.0, context=None)
    assert rl["bound_weights"] == pytest.approx(40.0) and rl["fraction_weights"] == pytest.approx(0.5)
    kv = roofline.roofline(10.0, 1e9, 1e3, tokens_per_s=20.0, batch=4.0, context=250e3)
    assert kv["bound_kv"] == pytest.approx(4 * 10e9 / 2e9) and kv["fraction_kv"] == pytest.approx(1.0)
    bw = roofline.bandwidth(size_mib=4, repeats=2, threads=1)
    assert bw["copy_gbs"] > 0 and bw["read_gbs"] > 0 and bw["repeats"] == 2


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "benchmarks").glob("*.py")
                                           if "__main__" in p.read_text()))  # scripts, not their helper modules
def test_every_benchmark_script_explains_its_options(script):
    """`--help` of each benchmark renders (a stray `%` in a help string once broke argparse's)."""
    import subprocess

    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--help"], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]


def test_calibration_counts_coverage_and_the_widening_that_would_hold_every_window():
    calibration = load_benchmark("calibration")
    c = calibration.coverage([1.0, 1.1, 0.8, 1.5, 0.95], [1.0, 0.9, 1.2])
    assert c["inside"] == 3 and c["share"] == 0.6 and c["ci"][0] < 0.6 < c["ci"][1]
    # 1.5 sits log(1.5)/log(1.2) = 2.22 half-widths above the point; 0.8 log(1.25)/log(1/0.9) = 2.12 below
    assert c["widen"] == pytest.approx(math.log(1.5) / math.log(1.2))
    assert calibration.coverage([1.0], [1.0, math.nan, math.nan])["inside"] is None, "no stated interval"
    assert calibration.widen_needed([0.5, 0.6], 0.5, 0.4, 0.7) < 1, "all inside"
    s = calibration.spread([1.0, 1.2, 0.9])
    assert s["ratio"] == pytest.approx(1.2 / 0.9) and 0 < s["cv"] < 0.2


def test_a_fresh_launch_is_predicted_by_a_wider_interval_than_the_mean():
    from autotune.measure.compare import Noise, Point, estimate

    p = Point("k", "trial 0", {"capacity_tps": [1.0, 1.2]}, {})
    noise = Noise(sd=0.1, df=3, log=True)
    mean, fresh = estimate(p, "capacity_tps", noise), estimate(p, "capacity_tps", noise, fresh=True)
    assert fresh.mean == mean.mean and fresh.low < mean.low and fresh.high > mean.high
    assert math.log(fresh.high / fresh.mean) == pytest.approx(math.log(mean.high / mean.mean) * math.sqrt(3))


def test_guidellm_runs_are_judged_by_our_rule_on_their_window():
    ref = load_benchmark("capacity_reference")

    def req(start, latency, ttft_ms, status="successful"):
        return status, {"request_start_time": start, "request_end_time": start + latency,
                        "request_latency": latency - 0.5, "request_scheduled_latency": latency,
                        "time_to_first_token_ms": ttft_ms, "output_tokens": 20}

    rows = [req(100.5, 3.0, 300), req(101, 9.0, 300), req(102, 3.0, 2500), req(103, 3.0, None, "errored"),
            req(99.0, 3.0, 300), *[req(104 + i * 0.1, 2.0, 200) for i in range(16)],
            req(109, 1.0, None, "incomplete"), req(101.5, 8.6, None, "incomplete")]
    bench = {"start_time": 100.0, "end_time": 110.0, "requests": {}}
    for status, r in rows:
        bench["requests"].setdefault(status, []).append(r)
    limits = {"task_ms": 8000, "ttft_ms": 2000, "tpot_ms": None, "e2e_ms": None}
    v = ref.judge_benchmark(bench, limits, 0.95, 0.9)
    # the warmup request (99.0) is out; too slow (9 s from its scheduled arrival), TTFT 2.5 s and errored miss
    # cut at the end: one 1 s old has no outcome (left out, counted), one 8.5 s old is a known miss
    assert v["requests"] == 21 and v["censored"] == 1 and v["attainment"] == 17 / 21 and not v["passed"]
    assert v["achieved_rate"] == 2.2 and v["load_s"] == 10.0
    report = {"conclusions": [{"best_passing_streams": 4, "lowest_failing_streams": 5, "stop_reason": "converged",
                               "probes": [{}, {}, {}]}],
              "benchmarks": [{"start_time": 0, "end_time": 20, "config": {"strategy": {"streams": s}},
                              "metrics": {"requests_per_second": {"successful": {"mean": s * 0.3}}}}
                             for s in (1, 2, 4, 5)]}
    g = ref.goodput_answer(report)
    assert (g["streams"], g["lowest_failing"], g["probes"], g["load_s"]) == (4, 5, 3, 80)
    assert g["rate"] == pytest.approx(1.2)


def test_roofline_compute_bound_counts_the_multiplied_parameters_and_measures_a_gemm():
    compute = load_benchmark("roofline_compute")
    b = {"tied": True, "params": {"linear": 1000, "embedding": 500, "lm_head": 0}}
    cfg = {"num_attention_heads": 4, "hidden_size": 32, "num_hidden_layers": 2}
    f = compute.flops_per_token(b, cfg, None)
    assert f["weights"] == 2 * 1500 and f["attention"] == 0  # tied: the embedding table is the lm_head
    with_context = compute.flops_per_token({**b, "tied": False, "params": {**b["params"], "lm_head": 200}}, cfg, 100)
    assert with_context["weights"] == 2 * 1200 and with_context["attention"] == 4 * 2 * 4 * 8 * 100
    assert compute.compute_bound(3.0, f) == pytest.approx(3e9 / 3000)
    assert compute.nearer(50.0, 100.0, 1000.0).startswith("memory (50% of memory's, 5% of compute's)")
    assert compute.nearer(50.0, 1000.0, 100.0).startswith("compute")
    assert compute.nearer(50.0, 100.0, math.nan).startswith("memory (no compute bound")
    g = compute.gemm_rate("float32", REPO / ".venv-engine" / "bin" / "python", size=128, repeats=1, threads=1)
    assert g["gflops"] > 0 and g["library"].startswith("torch") and g["threads"] == 1, g
    missing = compute.gemm_rate("bfloat16", REPO / "no-such-python", size=8)
    assert math.isnan(missing["gflops"]) and "no engine python" in missing["why"]
