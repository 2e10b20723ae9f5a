"""A trial stops its capacity search once its quality is certain to break the space's floor: the set graded as
the trial would grade it now, with every ungraded item at the best score, is still below the floor."""

from __future__ import annotations

from types import SimpleNamespace

from autotune.config.space import Constraint
from autotune.measure.capacity import CapacitySearch, LevelResult
from autotune.search.trial import below_quality_floor


def _level(passed: bool, tasks: list[tuple[str, bool, float]]):
    load = SimpleNamespace(tasks=[{"id": i, "ok": ok, "score": score, "phase": "measure", "send_ts": n}
                                  for n, (i, ok, score) in enumerate(tasks)])
    return SimpleNamespace(load=load, verdict=SimpleNamespace(passed=passed))


def _inputs(floor: float | None, ids: list[str], complete: bool = True):
    constraints = [Constraint(metric="task_error_rate", op="<=", value=0.02)]
    if floor is not None:
        constraints.append(Constraint(metric="quality", op=">=", value=floor))
    return SimpleNamespace(space=SimpleNamespace(constraints=constraints), eval_ids=ids, complete_eval=complete,
                           references={}, scorer=None)


def _search(*passed: bool) -> CapacitySearch:
    s = CapacitySearch(start_rate=1.0)
    for i, p in enumerate(passed):
        s.record(LevelResult(1.0 * 2 ** i, p))
    return s


IDS = ["a", "b", "c", "d"]


def test_the_floor_stops_a_search_only_when_no_ungraded_item_could_lift_quality_over_it():
    held = _level(True, [("a", True, 0.0), ("b", True, 0.0)])
    # a, b graded 0; c, d ungraded: at best (0 + 0 + 1 + 1) / 4 = 0.5, which a 0.5 floor admits
    assert below_quality_floor([held], _search(True), _inputs(0.5, IDS)) is None
    assert below_quality_floor([held], _search(True), _inputs(0.6, IDS)) == "quality_floor"
    assert below_quality_floor([held], _search(True), _inputs(None, IDS)) is None, "no floor, no stop"
    # a screening window grades on what it reached: it decides nothing alone
    assert below_quality_floor([held], _search(True), _inputs(0.6, IDS, complete=False)) is None


def test_the_floor_grades_as_the_trial_does_failures_in_held_levels_count_zero_over_the_sla_only_answers():
    held = _level(True, [("a", True, 1.0), ("b", False, 0.0)])
    over = _level(False, [("c", False, 0.0), ("d", True, 0.0)])
    # graded: a 1, b 0 (failed in a held level), d 0 (answered over the SLA); c ungraded (its miss was the
    # overload's): at best (1 + 0 + 1 + 0) / 4 = 0.5
    search = _search(True, False)
    assert below_quality_floor([held, over], search, _inputs(0.5, IDS)) is None
    assert below_quality_floor([held, over], search, _inputs(0.55, IDS)) == "quality_floor"
    # nothing held yet: a lower passing level would change the grading (failures would count only when held), so
    # the floor decides nothing before a level has held
    nothing = _search(False, False)
    failed = _level(False, [("a", True, 1.0), ("b", False, 0.0)])
    assert below_quality_floor([failed, over], nothing, _inputs(0.9, IDS)) is None
