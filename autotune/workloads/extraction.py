"""The running example: extract a person's name, e-mail and postal address from a short article.

Articles are generated from a seed (deterministic), with distractors (other people, other e-mails, phone
numbers) whose count grows with the difficulty level. Scoring is per-field exact match after normalisation
(the answer arrives parsed from the trial's output format, see autotune/fmware/formats.py).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FIELDS = ("name", "email", "address")
FIRST = ["Alice", "Bruno", "Chen", "Dana", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jamal", "Keiko", "Liam",
         "Maya", "Nikolai", "Olga", "Pedro", "Quinn", "Rosa", "Samir", "Tara", "Umar", "Vera", "Wen", "Yusuf"]
LAST = ["Anders", "Baptiste", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova", "Jensen",
        "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Petrov", "Rossi", "Schmidt", "Tanaka", "Weber"]
STREETS = ["Oak Street", "Maple Avenue", "Harbor Road", "Mill Lane", "Cedar Drive", "King Street",
           "Station Road", "Park Avenue", "River Walk", "Hill Crescent"]
CITIES = [("Springfield", "62704"), ("Riverton", "84065"), ("Lakeside", "92040"), ("Fairview", "37062"),
          ("Greenville", "29601"), ("Ashford", "06278"), ("Brookfield", "53005"), ("Clayton", "63105")]
DOMAINS = ["example.org", "mail.test", "acme.example", "uni.example.edu", "post.example.net"]
TOPICS = ["opened a bakery", "won the regional chess final", "restored an old sailboat",
          "started a community garden", "published a book on local history", "organised a charity run",
          "launched a repair café", "coached the junior football team"]
TEMPLATES = [
    "{name} recently {topic}. Readers can reach {them} at {email} or write to {address}.",
    "Local news: {name} {topic}. Contact: {email}. Postal address: {address}.",
    "After years of planning, {name} {topic}. {Their} mailing address is {address}; e-mail {email}.",
    "{address} is where {name} lives, who {topic} last month. Questions go to {email}.",
]
DISTRACTORS = [
    "{other} congratulated the organisers and can be called on {phone}.",
    "The event was covered by {other} ({other_email}), who lives at {other_address}.",
    "For press enquiries call {phone}; {other} from the town council also attended.",
    "{other}, a neighbour, said it was long overdue.",
]


def _person(rng: random.Random) -> dict[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    city, zipc = rng.choice(CITIES)
    email = f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}"
    address = f"{rng.randint(1, 250)} {rng.choice(STREETS)}, {city} {zipc}"
    return {"name": f"{first} {last}", "email": email, "address": address}


def generate(n: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """n items {id, difficulty, input: {article}, reference: {name, email, address}}, identical per seed."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        difficulty = ("easy", "medium", "hard")[i % 3]
        target = _person(rng)
        other = _person(rng)
        while other["name"] == target["name"]:
            other = _person(rng)
        pron = rng.choice([("them", "Their"), ("her", "Her"), ("him", "His")])
        main = rng.choice(TEMPLATES).format(topic=rng.choice(TOPICS), them=pron[0], Their=pron[1], **target)
        extra = {"easy": 0, "medium": 1, "hard": 2}[difficulty]
        phone = f"+1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}"
        sentences = [
            d.format(other=other["name"], other_email=other["email"], other_address=other["address"], phone=phone)
            for d in rng.sample(DISTRACTORS, extra)
        ]
        if difficulty == "hard":  # the distractor with full contact details comes first
            sentences.insert(0, DISTRACTORS[1].format(
                other=other["name"], other_email=other["email"], other_address=other["address"], phone=phone))
            sentences = list(dict.fromkeys(sentences))
        article = " ".join([*sentences[:1], main, *sentences[1:]]) if difficulty == "hard" else \
            " ".join([main, *sentences])
        items.append({"id": f"ex-{i:04d}", "difficulty": difficulty, "input": {"article": article},
                      "reference": target})
    return items


def write_jsonl(items: Iterable[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(it, sort_keys=True) + "\n" for it in items))


def normalise(value: Any) -> str:
    """Case-, space- and punctuation-insensitive form used for exact match."""
    text = str(value or "").lower().strip()
    text = re.sub(r"[\s,;.]+", " ", text)
    return text.strip(" \"'<>")


def score(answer: dict[str, str], reference: dict[str, str]) -> float:
    """Share of the fields whose normalised value equals the reference's (0, 1/3, 2/3 or 1)."""
    hits = sum(normalise(answer.get(f)) == normalise(reference[f]) for f in FIELDS)
    return hits / len(FIELDS)


def examples(n: int = 3, seed: int = 1) -> list[dict[str, Any]]:
    """Worked examples for few-shot prompts: a different seed, so they never appear in the dataset."""
    return [{**it, "id": f"shot-{i}"} for i, it in enumerate(generate(n, seed=seed))]


if __name__ == "__main__":  # regenerate the shipped dataset: python -m autotune.workloads.extraction
    write_jsonl(generate(200, seed=0), Path("workloads/extraction/items.jsonl"))
    write_jsonl(examples(3, seed=1), Path("workloads/extraction/examples.jsonl"))
