"""Knob specs -> Optuna suggestions, conditional knobs, server/client split."""

from __future__ import annotations

import optuna
import pytest

from autotune.config.knobs import ClientConfig, split_values
from autotune.config.space import SpaceConfig
from autotune.samplers.optuna_sampler import make_sampler, suggest

SPACE = SpaceConfig.model_validate({
    "name": "t",
    "knobs": {
        "dtype": {"choices": ["float32", "bfloat16"]},
        "max_num_seqs": {"low": 2, "high": 64, "log": True},
        "spec_method": {"choices": ["none", "ngram", "draft_model"]},
        "num_speculative_tokens": {"low": 1, "high": 5, "when": {"spec_method": ["ngram", "draft_model"]}},
        "prompt_lookup_max": {"low": 2, "high": 4, "when": {"spec_method": ["ngram"]}},
        "draft_model": {"value": "/d", "when": {"spec_method": ["draft_model"]}},
        "max_tokens": {"choices": [32, 64]},
    },
})


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_conditional_knobs_only_when_active(sampler):
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=make_sampler(sampler, 0, 12, SPACE))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        values = suggest(trial, SPACE)
        method = values["spec_method"]
        seen.add(method)
        assert ("num_speculative_tokens" in values) == (method != "none")
        assert ("prompt_lookup_max" in values) == (method == "ngram")
        assert ("draft_model" in values) == (method == "draft_model")
        assert 2 <= values["max_num_seqs"] <= 64
        study.tell(trial, [values["max_num_seqs"], 1.0])
    assert len(seen) >= 2


def test_seed_reproduces_proposals():
    def proposals(seed):
        study = optuna.create_study(directions=["minimize"], sampler=make_sampler("tpe", seed, 6, SPACE))
        out = []
        for _ in range(6):
            t = study.ask()
            v = suggest(t, SPACE)
            out.append(v)
            study.tell(t, [float(v["max_num_seqs"])])
        return out

    assert proposals(3) == proposals(3)
    assert proposals(3) != proposals(4)


def test_split_server_and_client():
    cfg = split_values({"dtype": "float32", "max_num_seqs": 8, "max_tokens": 64})
    assert cfg.server.dtype == "float32" and cfg.server.max_num_seqs == 8
    assert cfg.client == ClientConfig(max_tokens=64)
