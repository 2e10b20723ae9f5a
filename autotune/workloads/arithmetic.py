"""Two-step arithmetic word problems (GSM8K-style) with exact answers.

Each problem has an intermediate quantity (`step1`) and a final `answer`; the sub-questions ask for each,
so sequential architectures can feed step1 into the final question. Difficulty grows the numbers.
Scoring: the first number in the answer equals the exact result (1) or not (0).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

from autotune.workloads.extraction import write_jsonl

NAMES = ["Ava", "Ben", "Chloe", "Diego", "Emma", "Femi", "Gita", "Hana", "Ivan", "Jonas", "Kira", "Leo"]

# (problem, step1 question, final question, step1(a, b, c), answer(a, b, c))
TEMPLATES = [
    ("{n} has {a} marbles and buys {b} bags with {c} marbles each.",
     "How many marbles are in the {b} bags together?", "How many marbles does {n} have now?",
     lambda a, b, c: b * c, lambda a, b, c: a + b * c),
    ("{n} bakes {b} trays of {c} cookies and gives away {a} cookies.",
     "How many cookies does {n} bake?", "How many cookies are left?",
     lambda a, b, c: b * c, lambda a, b, c: b * c - a),
    ("A train runs {c} km every hour for {b} hours, then {a} km more.",
     "How far does the train run in the {b} hours?", "How many km does the train run in total?",
     lambda a, b, c: b * c, lambda a, b, c: b * c + a),
    ("{n} earns {c} dollars a day for {b} days and then spends {a} dollars.",
     "How many dollars does {n} earn?", "How many dollars does {n} have left?",
     lambda a, b, c: b * c, lambda a, b, c: b * c - a),
    ("A school orders {b} boxes of {c} pens; {a} pens arrive broken.",
     "How many pens are ordered?", "How many pens are not broken?",
     lambda a, b, c: b * c, lambda a, b, c: b * c - a),
    ("{n} reads {c} pages a day for {b} days and {a} pages on the last evening.",
     "How many pages does {n} read in the {b} days?", "How many pages does {n} read in total?",
     lambda a, b, c: b * c, lambda a, b, c: b * c + a),
]
RANGES = {"easy": (2, 5, 2, 9), "medium": (3, 9, 5, 20), "hard": (6, 15, 12, 60)}  # b_lo, b_hi, c_lo, c_hi


def generate(n: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """n items {id, difficulty, input: {problem, q_step1, q_answer}, reference: {step1, answer}} per seed."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        difficulty = ("easy", "medium", "hard")[i % 3]
        b_lo, b_hi, c_lo, c_hi = RANGES[difficulty]
        problem, q1, q2, step1, answer = rng.choice(TEMPLATES)
        b, c = rng.randint(b_lo, b_hi), rng.randint(c_lo, c_hi)
        a = rng.randint(1, b * c - 1)  # keeps subtraction results positive
        names = {"n": rng.choice(NAMES), "a": a, "b": b, "c": c}
        items.append({
            "id": f"ar-{i:04d}", "difficulty": difficulty,
            "input": {"problem": problem.format(**names), "q_step1": q1.format(**names),
                      "q_answer": q2.format(**names)},
            "reference": {"step1": str(step1(a, b, c)), "answer": str(answer(a, b, c))},
        })
    return items


def first_number(text: Any) -> str | None:
    m = re.search(r"-?\d[\d,]*(?:\.\d+)?", str(text or ""))
    if not m:
        return None
    value = float(m.group(0).replace(",", ""))
    return str(int(value)) if value.is_integer() else str(value)


def score(answer: dict[str, str], reference: dict[str, str]) -> float:
    """1 when the final answer's first number equals the exact result, else 0."""
    return 1.0 if first_number(answer.get("answer")) == reference["answer"] else 0.0


def examples(n: int = 3, seed: int = 1) -> list[dict[str, Any]]:
    return [{**it, "id": f"shot-{i}"} for i, it in enumerate(generate(n, seed=seed))]


if __name__ == "__main__":  # regenerate the shipped dataset: python -m autotune.workloads.arithmetic
    write_jsonl(generate(200, seed=0), Path("workloads/arithmetic/items.jsonl"))
    write_jsonl(examples(3, seed=1), Path("workloads/arithmetic/examples.jsonl"))
