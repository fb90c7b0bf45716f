"""A synthetic, verifiable preference set the project makes itself (seeded, deterministic).

Each item is an instruction whose compliance code can check, one response that complies and one
that does not. `CHECKS[category](params, response)` is the checker, so every label is verified,
not assumed. Categories: word_count, sentence_count, uppercase, lowercase, include_word,
avoid_word, bullets, json, arithmetic; difficulty `easy` (a blatant violation) or `hard` (off by
one, a single letter or word). `subset` is "category/difficulty".

    pairs = synthetic_pairs(2000, seed=0)      # thousands on demand, in milliseconds
"""

from __future__ import annotations

import json
import random
import re
from typing import Any, Callable

from reflectrm.data.formats import order_by_hash
from reflectrm.records import Message, PreferencePair

TOPICS = [
    "the ocean",
    "autumn",
    "a small town",
    "bicycles",
    "coffee",
    "the moon",
    "libraries",
    "rain",
    "gardening",
    "trains",
    "mountains",
    "music",
]
WORDS = {
    "the ocean": "waves salt blue deep tide shore water fish cold vast".split(),
    "autumn": "leaves red gold cool wind harvest orange falling crisp trees".split(),
    "a small town": "streets quiet shops neighbors bakery square church market friendly old".split(),
    "bicycles": "wheels pedals ride chain gears fast helmet road bell frame".split(),
    "coffee": "beans warm cup bitter morning roast aroma mug brew dark".split(),
    "the moon": "night light craters pale orbit silver tides glow sky full".split(),
    "libraries": "books shelves quiet reading pages stories desk loans study calm".split(),
    "rain": "drops clouds wet grey storm puddles umbrella falls soft roof".split(),
    "gardening": "soil seeds plants water flowers roots sun grow weeds spring".split(),
    "trains": "tracks station carriages journey whistle rails steam tickets speed travel".split(),
    "mountains": "peaks snow climb rocks high trails air cold summit view".split(),
    "music": "songs melody rhythm notes drums guitar sing loud chorus band".split(),
}
PEOPLE = [("Ada", 36), ("Bruno", 52), ("Chen", 29), ("Dana", 41), ("Emeka", 33), ("Farah", 27)]
ITEMS = ["fruits", "colours", "animals", "countries", "sports", "tools"]
ITEM_WORDS = {
    "fruits": ["Apple", "Banana", "Cherry", "Mango", "Pear", "Plum", "Grape"],
    "colours": ["Red", "Blue", "Green", "Yellow", "Purple", "Orange", "Black"],
    "animals": ["Dog", "Cat", "Horse", "Eagle", "Otter", "Tiger", "Whale"],
    "countries": ["France", "Japan", "Brazil", "Kenya", "Canada", "Norway", "India"],
    "sports": ["Tennis", "Football", "Rowing", "Chess", "Cycling", "Judo", "Golf"],
    "tools": ["Hammer", "Saw", "Wrench", "Drill", "Chisel", "Pliers", "Level"],
}


# --------------------------------------------------------------------------- checkers


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", text)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


def _bullets(text: str) -> list[str]:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines if lines and all(line.startswith("- ") for line in lines) else []


def _json_ok(params: dict[str, Any], text: str) -> bool:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.get("name") == params["name"] and obj.get("age") == params["age"]


CHECKS: dict[str, Callable[[dict[str, Any], str], bool]] = {
    "word_count": lambda p, t: len(_words(t)) == p["k"],
    "sentence_count": lambda p, t: len(_sentences(t)) == p["k"],
    "uppercase": lambda p, t: any(c.isalpha() for c in t) and t == t.upper(),
    "lowercase": lambda p, t: any(c.isalpha() for c in t) and t == t.lower(),
    "include_word": lambda p, t: p["word"] in [w.lower() for w in _words(t)],
    "avoid_word": lambda p, t: p["word"] not in [w.lower() for w in _words(t)] and len(_words(t)) > 3,
    "bullets": lambda p, t: len(_bullets(t)) == p["k"],
    "json": _json_ok,
    "arithmetic": lambda p, t: t.strip() == str(p["answer"]),
}


def complies(category: str, params: dict[str, Any], response: str) -> bool:
    return CHECKS[category](params, response)


# --------------------------------------------------------------------------- generators


def _sentence(rng: random.Random, topic: str, n_words: int) -> str:
    words = [rng.choice(WORDS[topic]) for _ in range(n_words)]
    return (" ".join(words)).capitalize() + "."


def _off_by(rng: random.Random, k: int, hard: bool, low: int = 1) -> int:
    delta = 1 if hard else rng.randint(3, 6)
    return k + delta if k - delta < low or rng.random() < 0.5 else k - delta


def _make(category: str, rng: random.Random, hard: bool) -> tuple[str, str, str, dict[str, Any]]:
    """(instruction, complying response, violating response, params)."""
    topic = rng.choice(TOPICS)
    if category == "word_count":
        k = rng.randint(5, 12)
        bad = _off_by(rng, k, hard, low=2)
        return (
            f"Write one sentence about {topic} with exactly {k} words.",
            _sentence(rng, topic, k),
            _sentence(rng, topic, bad),
            {"k": k},
        )
    if category == "sentence_count":
        k = rng.randint(2, 4)
        bad = _off_by(rng, k, hard)
        make = lambda m: " ".join(_sentence(rng, topic, rng.randint(4, 7)) for _ in range(m))  # noqa: E731
        return f"Write exactly {k} sentences about {topic}.", make(k), make(bad), {"k": k}
    if category in ("uppercase", "lowercase"):
        base = _sentence(rng, topic, rng.randint(5, 9))
        good = base.upper() if category == "uppercase" else base.lower()
        if hard:  # one word in the wrong case
            words = good.split()
            i = rng.randrange(len(words))
            words[i] = words[i].lower() if category == "uppercase" else words[i].upper()
            bad = " ".join(words)
        else:
            bad = base
        case = "UPPERCASE" if category == "uppercase" else "lowercase"
        return f"Write a sentence about {topic} in {case} letters only.", good, bad, {}
    if category in ("include_word", "avoid_word"):
        word = rng.choice(WORDS[topic])
        others = [w for w in WORDS[topic] if w != word]
        without = (" ".join(rng.choice(others) for _ in range(rng.randint(6, 9)))).capitalize() + "."
        with_words = without[:-1].split()
        with_words.insert(rng.randrange(1, len(with_words)), word)
        with_ = " ".join(with_words) + "."
        if not hard:
            with_ = with_ + f" {word.capitalize()} {word}."
        if category == "include_word":
            return f"Write a sentence about {topic} that uses the word '{word}'.", with_, without, {"word": word}
        return f"Write a sentence about {topic} without using the word '{word}'.", without, with_, {"word": word}
    if category == "bullets":
        kind = rng.choice(ITEMS)
        k = rng.randint(2, 5)
        names = rng.sample(ITEM_WORDS[kind], 7)
        good = "\n".join(f"- {x}" for x in names[:k])
        bad = "\n".join(f"- {x}" for x in names[: _off_by(rng, k, True)]) if hard else ", ".join(names[:k]) + "."
        return (
            f"List exactly {k} {kind} as a bulleted list (one '- ' item per line), nothing else.",
            good,
            bad,
            {"k": k},
        )
    if category == "json":
        name, age = rng.choice(PEOPLE)
        good = json.dumps({"name": name, "age": age})
        bad = json.dumps({"name": name, "age": age + rng.choice([-1, 1])}) if hard else f"{name} is {age} years old."
        return (
            f'Return only a JSON object with the keys "name" and "age" for {name}, who is {age} years old.',
            good,
            bad,
            {"name": name, "age": age},
        )
    if category == "arithmetic":
        a, b = rng.randint(12, 99), rng.randint(12, 99)
        op = rng.choice(["+", "-", "*"])
        answer = a + b if op == "+" else a - b if op == "-" else a * b
        wrong = answer + (rng.choice([-1, 1]) if hard else rng.choice([-10, 10, 100]))
        return f"What is {a} {op} {b}? Answer with the number only.", str(answer), str(wrong), {"answer": answer}
    raise ValueError(f"unknown synthetic category {category!r}; valid: {', '.join(CHECKS)}")


def synthetic_pairs(
    n: int, seed: int = 0, categories: tuple[str, ...] = tuple(CHECKS), hard_fraction: float = 0.5
) -> list[PreferencePair]:
    """`n` verified pairs; the complying response is first or second by a seeded hash of the id."""
    if n < 1:
        raise ValueError(f"n={n}: ask for at least one pair")
    pairs = []
    for i in range(n):
        rng = random.Random(f"{seed}:{i}")
        category = categories[i % len(categories)]
        hard = rng.random() < hard_fraction
        prompt, good, bad, params = _make(category, rng, hard)
        assert complies(category, params, good) and not complies(category, params, bad), (category, params, good, bad)
        pid = f"synth-{seed}-{i}"
        difficulty = "hard" if hard else "easy"
        meta = {"category": category, "difficulty": difficulty, "params": params}
        context = (Message("user", prompt),)
        subset = f"{category}/{difficulty}"
        if order_by_hash(pid, seed):
            pairs.append(PreferencePair(pid, context, good, bad, 1, "synthetic", subset, meta))
        else:
            pairs.append(PreferencePair(pid, context, bad, good, 2, "synthetic", subset, meta))
    return pairs


# --------------------------------------------------------------------------- target judgments (SFT)


def _fact(category: str, params: dict[str, Any], text: str) -> str:
    """What the checker sees in one response, in words."""
    if category == "word_count":
        return f"has {len(_words(text))} words (the instruction asks for exactly {params['k']})"
    if category == "sentence_count":
        return f"has {len(_sentences(text))} sentences (the instruction asks for exactly {params['k']})"
    if category in ("uppercase", "lowercase"):
        want = text.upper() if category == "uppercase" else text.lower()
        wrong = [w for w, v in zip(text.split(), want.split()) if w != v]
        return "uses only the required case" if not wrong else f"has words in the wrong case, such as '{wrong[0]}'"
    if category in ("include_word", "avoid_word"):
        present = params["word"] in [w.lower() for w in _words(text)]
        return f"{'uses' if present else 'does not use'} the word '{params['word']}'"
    if category == "bullets":
        items = _bullets(text)
        return (
            f"is a bulleted list of {len(items)} items (the instruction asks for {params['k']})"
            if items
            else "is not a bulleted list"
        )
    if category == "json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return "is not a JSON object"
        return (
            f"is JSON with name {obj.get('name')!r} and age {obj.get('age')!r}"
            if isinstance(obj, dict)
            else "is not a JSON object"
        )
    if category == "arithmetic":
        return f"answers {text.strip()} (the correct answer is {params['answer']})"
    raise ValueError(f"unknown synthetic category {category!r}")


def target_analysis(pair: PreferencePair) -> str:
    """A short, checkable analysis of a synthetic pair, from the checker's own facts (SFT targets)."""
    return " ".join(f"Response {k} {_checked(pair, k)[0]}" for k in (1, 2))


def target_critique(pair: PreferencePair, k: int) -> tuple[str, int]:
    """A checkable critique of response k of a synthetic pair, and its score (8 if it complies, else 3): the
    Critic-RM counterpart of `target_analysis` (a warm start in the critique format)."""
    fact, ok = _checked(pair, k)
    return f"The response {fact}", (8 if ok else 3)


def _checked(pair: PreferencePair, k: int) -> tuple[str, bool]:
    """What the checker found in response k ("has 6 words (...), so it follows the instruction.") and whether it
    complies: the one sentence both SFT targets are built from."""
    category, params = pair.metadata["category"], pair.metadata["params"]
    text = pair.response_1 if k == 1 else pair.response_2
    ok = complies(category, params, text)
    return f"{_fact(category, params, text)}, so it {'follows' if ok else 'does not follow'} the instruction.", ok
