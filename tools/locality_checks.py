"""How the locality score treats gamed outputs, on the *training* rewrites (or the eval's).

Each row is a way to answer every neutral sentence, scored with `mclab.evaluation.
locality_score` against the sentences themselves: the hand-written reference rewrites, and
cheap ways to look local without rewriting. The settings of the score (MEANING_FLOOR, the
swap test, the gloss) were chosen on the training rewrites with this table; the held-out
rewrites only confirm it (docs/how-settings-were-chosen.md, "Locality score").

    python tools/locality_checks.py [--split rewrites_train|rewrites_eval] [--seed 0]
"""

from __future__ import annotations

import argparse
import re

import numpy as np

from mclab.data import load_scenario
from mclab.evaluation import MEANING_FLOOR, locality_score, meaning_floor
from mclab.models import load_embedder
from mclab.scorecard import reference_rewrites

FUNCTION_WORDS = set("a an the to of in on at for and or but so is are was were be been am i "
                     "you he she it we they my your his her our their this that with".split())


def bare(sentence: str) -> str:
    return re.sub(r"[.!?]*\s*$", "", sentence)


def swap_random_word(sentence: str, phrase: str, rng) -> str:
    """One content word of the sentence replaced by `phrase`: slang in a random place."""
    words = bare(sentence).split()
    content = [i for i, w in enumerate(words) if w.lower().strip(",") not in FUNCTION_WORDS]
    words[rng.choice(content or list(range(len(words))))] = phrase
    return " ".join(words) + "."


def gamed_outputs(rows, lexicon, seed: int = 0) -> dict[str, list[str]]:
    """Ways to use local phrases without rewriting, one output per neutral sentence."""
    rng = np.random.default_rng(seed)
    sources = list(rows["neutral"])
    phrases = [entry["forms"][0] for entry in lexicon]
    return {
        "G'day mate + copy": ["G'day mate, " + s[0].lower() + s[1:] for s in sources],
        "drop the last word + mate": [bare(s).rsplit(" ", 1)[0] + ", mate." for s in sources],
        "a random word -> mate": [swap_random_word(s, "mate", rng) for s in sources],
        "a random word -> a random phrase": [swap_random_word(s, rng.choice(phrases), rng)
                                             for s in sources],
        "first half + mate": [" ".join(bare(s).split()[:max(1, len(s.split()) // 2)])
                              + ", mate." for s in sources],
        "slang only": ["G'day mate, no worries, she'll be right."] * len(sources),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="rewrites_train",
                        choices=["rewrites_train", "rewrites_eval"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    local = load_scenario("local")
    rows, lexicon, embedder = local[args.split], list(local["lexicon"]), load_embedder()
    if args.split == "rewrites_train":
        floor = meaning_floor(rows["neutral"], rows["local"], lexicon, embedder)
        print(f"meaning floor on the training rewrites: {floor:.3f} "
              f"(MEANING_FLOOR = {MEANING_FLOOR})")
    outputs = {**reference_rewrites(rows), **gamed_outputs(rows, lexicon, args.seed)}
    print(f"\n{args.split}, {len(rows)} sentences\n"
          f"{'outputs':<34} {'locality':>8} {'style':>6} {'swap':>6} {'meaning':>8}")
    for name, outs in outputs.items():
        r = locality_score(outs, list(rows["neutral"]), lexicon, embedder)
        print(f"{name:<34} {r.score:8.3f} {r.style_rate:6.3f} {r.swap_rate:6.3f} "
              f"{r.meaning:8.3f}")


if __name__ == "__main__":
    main()
