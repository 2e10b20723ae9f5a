"""What users run around a study: export (the deployable bundle), nightly (regression test), report."""

from autotune.ops.export import export_bundle
from autotune.ops.nightly import parse_forced, run_nightly
from autotune.ops.policy import DEFAULT_POLICY, POLICIES, Candidate, candidates, pick
from autotune.ops.report import write_report

__all__ = [
    "DEFAULT_POLICY", "POLICIES", "Candidate", "candidates", "export_bundle", "parse_forced", "pick", "run_nightly",
    "write_report",
]
