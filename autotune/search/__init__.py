"""The search loop: study (ask/tell, budget, resume), one trial, screening, repeats, confirmation, the front."""

from autotune.search.config_points import ALPHA, intervals, judge_front, resolution, study_noise, study_points
from autotune.search.confirm import screening_summary, survival_summary
from autotune.search.front import front_rows, study_workload
from autotune.search.inputs import check_models, trial_inputs
from autotune.search.noise_prior import study_prior
from autotune.search.routes import routes_for
from autotune.search.study import SearchOptions, run_search
from autotune.search.study_state import finished_trials
from autotune.search.trial import run_trial

__all__ = [
    "ALPHA", "SearchOptions", "check_models", "study_points", "finished_trials", "front_rows", "intervals",
    "judge_front", "resolution", "routes_for", "run_search", "run_trial", "screening_summary", "study_noise",
    "study_prior", "study_workload", "survival_summary", "trial_inputs",
]
