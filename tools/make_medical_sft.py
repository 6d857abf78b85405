"""Write the medical SFT chats (term -> definition) from the dermatology glossary.

Every glossary term that `eval_mc.jsonl` does not test becomes one question whose answer is
its glossary definition, word for word; every 6th of them (in glossary order) goes to the
validation file, which stops SFT and chose its rate (`tools/choose_settings.py MEDICAL_SFT`).
The eval's terms are left out of both files, so fine-tuning never sees an eval answer
written as a chat (`mclab.data` refuses a file that breaks this). Deterministic: rerunning
it rewrites the same two files.

    python tools/make_medical_sft.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "mclab" / "course_data" / "medical"
VAL_EVERY = 6  # every 6th eligible term validates
# question wordings, used in turn, so the model does not learn one string
TEMPLATES = ("What does the dermatology term '{term}' mean?",
             "Define '{term}' as a dermatologist would.",
             "In dermatology, what is meant by '{term}'?")


def read(name: str) -> list[dict]:
    with (FOLDER / name).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def build() -> tuple[list[dict], list[dict]]:
    tested = {row["term"] for row in read("eval_mc.jsonl")}
    eligible = [g for g in read("glossary.jsonl") if g["term"] not in tested]
    train, val = [], []
    for i, entry in enumerate(eligible):
        split, rows = ("val", val) if i % VAL_EVERY == VAL_EVERY - 1 else ("train", train)
        rows.append({"id": f"sft-{split}-{len(rows) + 1:03d}", "term": entry["term"],
                     "question": TEMPLATES[i % len(TEMPLATES)].format(term=entry["term"]),
                     "answer": entry["definition"]})
    return train, val


def main() -> int:
    train, val = build()
    for name, rows in (("sft_train.jsonl", train), ("sft_val.jsonl", val)):
        with (FOLDER / name).open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        print(f"{FOLDER / name}: {len(rows)} chats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
