"""The sampler contract: every sampler proposes valid conditional configs, honours its seed, survives failed
and infeasible trials, and resumes from storage. A synthetic objective stands in for the engine."""

from __future__ import annotations

import math

import optuna
import pytest

from autotune.config.samplers import SAMPLERS
from autotune.config.space import load_space
from autotune.samplers.optuna_sampler import make_sampler, set_constraints, suggest

SPACE = """\
name: contract
engine: {python: /bin/sh}
knobs:
  quantization: {choices: [none, w8a8]}
  max_num_seqs: {low: 2, high: 32, log: true}
  spec_method: {choices: [none, ngram]}
  num_speculative_tokens: {low: 1, high: 4, when: {spec_method: [ngram]}}
  output_format: {choices: [json, yaml, minimal]}
  semantic_cache: {choices: [false, true]}
  cache_threshold: {low: 0.8, high: 0.99, when: {semantic_cache: [true]}}
  block_size: {value: 32}
objectives:
  - {metric: p95_task_ms, direction: minimize}
  - {metric: usd_per_1k_tasks, direction: minimize}
  - {metric: quality, direction: maximize}
constraints:
  - {metric: task_error_rate, op: "<=", value: 0.01}
"""
GRID_SPACE = SPACE.replace("{low: 2, high: 32, log: true}", "{choices: [4, 16]}").replace(
    "  num_speculative_tokens: {low: 1, high: 4, when: {spec_method: [ngram]}}\n", "").replace(
    "  cache_threshold: {low: 0.8, high: 0.99, when: {semantic_cache: [true]}}\n", "")


@pytest.fixture
def space(write):
    def make(name: str):
        return load_space(write("s.yaml", GRID_SPACE if name == "grid" else SPACE), check_paths=False)
    return make


def evaluate(v: dict) -> tuple[str, list[float], float]:
    """(state, objectives, violation): big batches 'OOM', w8a8+ngram 'unsupported', yaml infeasible."""
    if v["max_num_seqs"] > 24 or (v["quantization"] == "w8a8" and v["spec_method"] == "ngram"):
        return "fail", [], 0.0
    lat = 1000.0 / math.log2(v["max_num_seqs"] + 1) + 50 * v.get("num_speculative_tokens", 0)
    quality = {"json": 0.6, "yaml": 0.4, "minimal": 0.3}[v["output_format"]] - (0.1 if v["semantic_cache"] else 0)
    return "ok", [lat, lat / 1e5, quality], 0.05 if v["output_format"] == "yaml" else -0.01


def check_valid(space, v: dict) -> None:
    for name, spec in space.knobs.items():
        active = all(v.get(dep) in allowed for dep, allowed in (spec.when or {}).items())
        assert (name in v) == active, f"{name} present={name in v} but active={active}: {v}"
        if name not in v:
            continue
        if spec.choices is not None:
            assert v[name] in spec.choices
        elif spec.low is not None:
            assert spec.low <= v[name] <= spec.high
        else:
            assert v[name] == spec.value


def run(study, space, n: int) -> list[dict]:
    proposed = []
    for _ in range(n):
        trial = study.ask()
        v = suggest(trial, space)
        check_valid(space, v)
        proposed.append(dict(trial.params))
        state, values, violation = evaluate(v)
        if state == "fail":
            trial.set_user_attr("fail_reason", "oom")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            set_constraints(trial, ["task_error_rate<=0.01"], [violation])
            study.tell(trial, values)
    return proposed


def new_study(space, name: str, seed: int, storage=None, study_name="c"):
    return optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True,
                               directions=[o.direction for o in space.objectives],
                               sampler=make_sampler(name, seed, 12, space))


@pytest.mark.parametrize("name", SAMPLERS)
def test_valid_configs_failures_and_infeasible(space, name):
    sp = space(name)
    study = new_study(sp, name, seed=3)
    run(study, sp, 14)
    states = [t.state for t in study.trials]
    assert len(states) == 14 and optuna.trial.TrialState.COMPLETE in states
    assert optuna.trial.TrialState.FAIL in states or name == "grid"


@pytest.mark.parametrize("name", SAMPLERS)
def test_seed_is_honoured(space, name):
    sp = space(name)
    a = run(new_study(sp, name, seed=7), sp, 8)
    b = run(new_study(sp, name, seed=7), sp, 8)
    assert a == b
    if name != "grid":  # a different seed explores differently
        assert a != run(new_study(sp, name, seed=8), sp, 8)


@pytest.mark.parametrize("name", SAMPLERS)
def test_resumes_from_storage(space, name, tmp_path):
    sp = space(name)
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    run(new_study(sp, name, seed=1, storage=storage), sp, 6)
    resumed = new_study(sp, name, seed=1, storage=storage)  # a new process: fresh sampler, same storage
    run(resumed, sp, 6)
    assert len(resumed.trials) == 12


@pytest.mark.parametrize("name", ["pymoo-nsga2", "pymoo-nsga3", "pymoo-moead"])
def test_pymoo_generations_advance_and_failures_are_bred_away(space, name):
    sp = space(name)
    study = new_study(sp, name, seed=0)
    run(study, sp, 24)
    gens = [t.system_attrs.get("pymoo:generation") for t in study.trials]
    assert None not in gens and max(gens) >= 1, gens
    first = [t for t in study.trials if t.system_attrs["pymoo:generation"] == 0]
    later = [t for t in study.trials if t.system_attrs["pymoo:generation"] == max(gens)]
    fail_rate = [sum(t.state.name == "FAIL" for t in ts) / len(ts) for ts in (first, later)]
    assert fail_rate[1] <= fail_rate[0], fail_rate


def test_enqueued_configs_bypass_pymoo_slots(space):
    sp = space("pymoo-nsga2")
    study = new_study(sp, "pymoo-nsga2", seed=0)
    study.enqueue_trial({"quantization": "none", "max_num_seqs": 4, "spec_method": "none", "output_format": "json",
                         "semantic_cache": False})
    run(study, sp, 2)
    assert study.trials[0].params["max_num_seqs"] == 4 and "pymoo:generation" not in study.trials[0].system_attrs
    assert study.trials[1].system_attrs["pymoo:index"] == 0


def test_unknown_sampler_and_bad_fits(space):
    sp = space("tpe")
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("cmaes", 0, 10, sp)
    with pytest.raises(ValueError, match="grid sampler needs `choices`"):
        make_sampler("grid", 0, 10, sp)


@pytest.mark.parametrize("name", ["tpe", "gp", "nsga2", "pymoo-nsga2", "pymoo-moead", "random"])
def test_independent_asks_are_the_ones_asked_one_by_one(space, name):
    """The search asks a sampler's independent draws at once and reorders them by server part; that must not
    change what is proposed: the same seed asked in one batch or one at a time gives the same configs."""
    from autotune.samplers.optuna_sampler import ask_size

    sp = space(name)
    batched, single = new_study(sp, name, seed=5), new_study(sp, name, seed=5)
    n = min(ask_size(batched.sampler, batched, batch=2, n_trials=12), 6)
    assert n >= 2  # every one of these samplers starts with independent draws (at least its batch)
    asked = [batched.ask() for _ in range(n)]
    in_batch = [suggest(t, sp) for t in asked]
    one_by_one = []
    for _ in range(n):
        t = single.ask()
        one_by_one.append(suggest(t, sp))
        state, values, violation = evaluate(one_by_one[-1])
        if state == "fail":
            single.tell(t, state=optuna.trial.TrialState.FAIL)
        else:
            set_constraints(t, ["task_error_rate<=0.01"], [violation])
            single.tell(t, values)
    assert in_batch == one_by_one
    if name in ("tpe", "gp"):  # the model starts after its random start: only the batch is asked at once
        run(single, sp, 12)
        assert ask_size(single.sampler, single, 2, 12) == 2 and ask_size(single.sampler, single, 1, 12) == 1
    if name in ("nsga2", "pymoo-nsga2", "pymoo-moead"):  # a generation's free places, never random fill-ins
        run(single, sp, 9)
        size = ask_size(single.sampler, single, batch=64, n_trials=12)
        assert 1 <= size <= 4 and (name != "pymoo-moead" or size == 1)


def test_every_place_that_names_samplers_derives_from_the_registry():
    """The space's Literal, `search --help` and the README list exactly the registry's names, and each factory
    builds a sampler."""
    import re
    from typing import get_args

    from autotune.config.space import SearchDefaults
    from tests.conftest import REPO, cli_invoke

    names = list(SAMPLERS)
    assert list(get_args(SearchDefaults.model_fields["sampler"].annotation)) == names
    help_text = re.sub(r"[\s│]+", " ", cli_invoke(["search", "--help"]).output)
    assert " | ".join(names) in help_text
    readme = (REPO / "README.md").read_text()
    paragraph = readme[readme.index("lists them):"):readme.index("all seeded.")]
    assert re.findall(r"`([a-z0-9-]+)`", paragraph) == names
