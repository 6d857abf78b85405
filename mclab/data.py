"""Load and validate the three scenario datasets (JSONL under <data dir>/<scenario>/).

The data ships inside the package (`mclab/course_data`, with its data card); MCLAB_DATA
points at another copy.

Every row is checked against a small schema; a bad row raises `DataError` naming the
file, the line and the field, before any model work starts.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import get_settings, shipped_data_dir

# A field that may be JSON null; otherwise a non-empty string.
STR_OR_NULL = (str, type(None))
# field -> type, per file; every listed field is required and strings must be non-empty.
SCHEMAS: dict[str, dict[str, dict[str, type | tuple]]] = {
    "company": {
        # access: who may read it ("all", or a group: see ACCESS_LABELS and mclab.access)
        "documents": {"id": str, "title": str, "category": str, "access": str, "text": str},
        "train_qa": {"id": str, "fact_id": str, "doc_id": str, "question": str, "answer": str},
        "eval_mc": {"id": str, "fact_id": str, "doc_id": str, "question": str,
                    "options": list, "answer": int},
        # Same rules as eval_mc, on facts the documents state but no training Q&A covers.
        "eval_uncovered_mc": {"id": str, "fact_id": str, "doc_id": str, "question": str,
                              "options": list, "answer": int},
        # Questions no document answers (for RAG abstention): the eval split is only scored,
        # the thresholds are chosen on the val split.
        "eval_unanswerable": {"id": str, "question": str, "near_doc_id": STR_OR_NULL,
                              "kind": str, "why_unanswerable": str},
        "val_unanswerable": {"id": str, "question": str, "near_doc_id": STR_OR_NULL,
                             "kind": str, "why_unanswerable": str},
        # Documents only some groups may read (pay, HR cases, security), kept apart from the
        # public knowledge base that every other company measurement uses; their facts as
        # training Q&A (to show that fine-tuning leaks them) and held-out questions.
        "restricted_documents": {"id": str, "title": str, "category": str, "access": str,
                                 "text": str},
        "train_restricted_qa": {"id": str, "fact_id": str, "doc_id": str, "question": str,
                                "answer": str},
        "eval_restricted": {"id": str, "fact_id": str, "doc_id": str, "question": str,
                            "gold": str},
    },
    "medical": {
        "glossary": {"term": str, "definition": str},
        "train_prose": {"id": str, "topic": str, "text": str},
        "heldout_prose": {"id": str, "topic": str, "text": str},
        "eval_mc": {"id": str, "term": str, "question": str, "options": list, "answer": int},
        "general_text": {"id": str, "topic": str, "text": str},
        # term -> definition chats for SFT (tools/make_medical_sft.py): the answer is the
        # glossary's definition; no term that eval_mc tests, none in both files
        "sft_train": {"id": str, "term": str, "question": str, "answer": str},
        "sft_val": {"id": str, "term": str, "question": str, "answer": str},
    },
    "local": {
        "lexicon": {"phrase": str, "meaning": str, "forms": list},
        "rewrites_train": {"id": str, "neutral": str, "local": str},
        "rewrites_eval": {"id": str, "neutral": str, "local": str},
        "preferences": {"id": str, "prompt": str, "chosen": str, "rejected": str},
    },
}
SCENARIOS = tuple(SCHEMAS)
# The company's multiple-choice files: one set of rules for both (see _check_mc_items).
COMPANY_MC = ("eval_mc", "eval_uncovered_mc")
# The company's unanswerable-question files and their two kinds: a near miss names a real
# entity and the document a keyword search would hit (near_doc_id); off-topic has null there.
COMPANY_UNANSWERABLE = ("eval_unanswerable", "val_unanswerable")
UNANSWERABLE_KINDS = ("near-miss", "off-topic")
# The medical SFT files: the first trains, the second chooses the number of steps.
MEDICAL_SFT = ("sft_train", "sft_val")
# Who may read a document: everyone, or the members of one group.
ACCESS_LABELS = ("all", "managers", "hr", "security")


class DataError(ValueError):
    """A dataset file or row is malformed; the message says where and how to fix it."""


def _check_row(row, schema: dict[str, type | tuple], where: str) -> None:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for field, kind in schema.items():
        if field not in row:
            raise DataError(f"{where}: missing field '{field}' (required: {', '.join(schema)})")
        value = row[field]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise DataError(f"{where}: field '{field}' must be an integer, got {value!r}")
        if kind is not int and not isinstance(value, kind):
            wanted = "str or null" if kind == STR_OR_NULL else kind.__name__
            raise DataError(
                f"{where}: field '{field}' must be {wanted}, got {type(value).__name__}"
            )
        if isinstance(value, str) and not value.strip():
            raise DataError(f"{where}: field '{field}' is empty")
        if kind is list and not all(isinstance(v, str) and v.strip() for v in value):
            raise DataError(f"{where}: field '{field}' must be a list of non-empty strings")
    if "options" in schema:
        options = row["options"]
        if len(options) < 2 or len(set(options)) != len(options):
            raise DataError(f"{where}: field 'options' needs at least 2 distinct options")
        if not 0 <= row["answer"] < len(options):
            raise DataError(
                f"{where}: field 'answer' is {row['answer']}, but must index 'options' "
                f"(0..{len(options) - 1})"
            )
    if "chosen" in schema and row["chosen"].strip() == row["rejected"].strip():
        raise DataError(f"{where}: field 'chosen' equals 'rejected'; a preference needs two replies")
    if "forms" in schema and not row["forms"]:
        raise DataError(f"{where}: field 'forms' is empty; list at least one surface form")
    if "kind" in schema:
        if row["kind"] not in UNANSWERABLE_KINDS:
            raise DataError(f"{where}: field 'kind' is {row['kind']!r}; use one of "
                            f"{', '.join(UNANSWERABLE_KINDS)}")
        if (row["kind"] == "near-miss") != (row["near_doc_id"] is not None):
            raise DataError(f"{where}: a near-miss names the document it nearly matches in "
                            "'near_doc_id'; an off-topic question has null there")


def read_jsonl(path: str | Path, schema: dict[str, type | tuple] | None = None) -> list[dict]:
    """Read a JSONL file; with a schema, validate every row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (is MCLAB_DATA pointing at a copy of "
                        "mclab/course_data?)")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
            if schema is not None:
                _check_row(row, schema, where)
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: the file has no rows")
    return rows


def _check_links(name: str, rows: dict[str, list[dict]], folder: Path) -> None:
    """Checks across files: ids unique, references resolve."""
    for split, items in rows.items():
        key = "id" if "id" in SCHEMAS[name][split] else next(iter(SCHEMAS[name][split]))
        seen = set()
        for lineno, row in enumerate(items, start=1):
            if row[key] in seen:
                raise DataError(f"{folder / split}.jsonl:{lineno}: duplicate {key} {row[key]!r}")
            seen.add(row[key])
    if name == "company":
        docs = {d["id"]: d["text"] for d in rows["documents"]}
        _check_doc_ids("train_qa", rows["train_qa"], docs, folder)
        for split in COMPANY_MC:
            _check_mc_items(split, rows[split], docs, folder)
        _check_uncovered(rows, folder)
        _check_unanswerable(rows, docs, folder)
        _check_restricted(rows, folder)
    if name == "medical":
        _check_medical_sft(rows, folder)


def _check_doc_ids(split: str, items: list[dict], docs: dict[str, str], folder: Path,
                   field: str = "doc_id") -> None:
    for lineno, row in enumerate(items, start=1):
        if row[field] is not None and row[field] not in docs:
            raise DataError(
                f"{folder / split}.jsonl:{lineno}: field '{field}' {row[field]!r} "
                "names no document in documents.jsonl"
            )


def _check_mc_items(split: str, items: list[dict], docs: dict[str, str], folder: Path) -> None:
    """A company multiple-choice item links to a document, and its correct option occurs in
    that document's text word for word (case-sensitive), so the answer is grounded."""
    _check_doc_ids(split, items, docs, folder)
    for lineno, row in enumerate(items, start=1):
        correct = row["options"][row["answer"]]
        if correct not in docs[row["doc_id"]]:
            raise DataError(
                f"{folder / split}.jsonl:{lineno}: the correct option {correct!r} (answer "
                f"{row['answer']}) does not occur in document {row['doc_id']!r}. Fix: copy the "
                "option word for word (same case) from the document, or correct 'answer' or "
                "'doc_id'."
            )


def _check_uncovered(rows: dict[str, list[dict]], folder: Path) -> None:
    """eval_uncovered_mc tests facts that no training Q&A and no eval_mc item covers."""
    used = {}
    for split in ("train_qa", "eval_mc"):
        for row in rows[split]:
            used.setdefault(row["fact_id"], split)
    for lineno, row in enumerate(rows["eval_uncovered_mc"], start=1):
        if row["fact_id"] in used:
            raise DataError(
                f"{folder / 'eval_uncovered_mc'}.jsonl:{lineno}: fact_id {row['fact_id']!r} is "
                f"also used in {used[row['fact_id']]}.jsonl, but this file may only test facts "
                "that no training Q&A or eval_mc item covers. Fix: give the item a new fact id "
                "(uf-...) for a fact train_qa.jsonl and eval_mc.jsonl do not state, or move it "
                "to eval_mc.jsonl."
            )


def _check_unanswerable(rows: dict[str, list[dict]], docs: dict[str, str], folder: Path) -> None:
    """The unanswerable questions: ids unique across both files, near_doc_id names a document,
    and no question (ignoring case) repeats one from another company file or from either
    unanswerable file."""
    asked = {}  # lowercased question -> the file that asks it
    for split in ("train_qa", *COMPANY_MC):
        for row in rows[split]:
            asked.setdefault(row["question"].strip().lower(), split)
    ids = {}
    for split in COMPANY_UNANSWERABLE:
        _check_doc_ids(split, rows[split], docs, folder, field="near_doc_id")
        for lineno, row in enumerate(rows[split], start=1):
            where = f"{folder / split}.jsonl:{lineno}"
            if row["id"] in ids:
                raise DataError(f"{where}: id {row['id']!r} is also used in {ids[row['id']]}"
                                ".jsonl; ids must be unique across both unanswerable files")
            ids[row["id"]] = split
            question = row["question"].strip().lower()
            if question in asked:
                raise DataError(
                    f"{where}: the question repeats one in {asked[question]}.jsonl. Fix: ask "
                    "a different question; the unanswerable files must be held out from every "
                    "other company file and from each other."
                )
            asked[question] = split


def _check_restricted(rows: dict[str, list[dict]], folder: Path) -> None:
    """Access labels are known; the restricted documents are restricted and their ids new; their
    Q&A links to them, and each held-out question's gold value occurs in its document."""
    for split in ("documents", "restricted_documents"):
        for lineno, row in enumerate(rows[split], start=1):
            where = f"{folder / split}.jsonl:{lineno}"
            if row["access"] not in ACCESS_LABELS:
                raise DataError(f"{where}: access {row['access']!r} is not one of "
                                f"{', '.join(ACCESS_LABELS)}")
            if split == "restricted_documents" and row["access"] == "all":
                raise DataError(f"{where}: a restricted document needs a group in 'access' "
                                "(managers, hr or security); public ones go in documents.jsonl")
    public = {d["id"] for d in rows["documents"]}
    restricted = {d["id"]: d["text"] for d in rows["restricted_documents"]}
    for lineno, row in enumerate(rows["restricted_documents"], start=1):
        if row["id"] in public:
            raise DataError(f"{folder / 'restricted_documents'}.jsonl:{lineno}: id {row['id']!r} "
                            "is also a document id in documents.jsonl; use a new id (rdoc-...)")
    for split in ("train_restricted_qa", "eval_restricted"):
        for lineno, row in enumerate(rows[split], start=1):
            where = f"{folder / split}.jsonl:{lineno}"
            if row["doc_id"] not in restricted:
                raise DataError(f"{where}: doc_id {row['doc_id']!r} names no document in "
                                "restricted_documents.jsonl")
            if split == "eval_restricted" and row["gold"] not in restricted[row["doc_id"]]:
                raise DataError(f"{where}: the gold value {row['gold']!r} does not occur in "
                                f"{row['doc_id']!r}. Fix: copy it word for word from the "
                                "document.")


def _check_medical_sft(rows: dict[str, list[dict]], folder: Path) -> None:
    """Each SFT chat answers with its term's glossary definition, word for word; no term is
    one eval_mc tests (the eval stays held out), and no term or id is in both files."""
    glossary = {g["term"]: g["definition"] for g in rows["glossary"]}
    tested = {row["term"] for row in rows["eval_mc"]}
    seen = {}  # term or id -> the file that has it
    for split in MEDICAL_SFT:
        for lineno, row in enumerate(rows[split], start=1):
            where = f"{folder / split}.jsonl:{lineno}"
            term = row["term"]
            if term not in glossary:
                raise DataError(f"{where}: term {term!r} is not in glossary.jsonl; the chats "
                                "are built from it (tools/make_medical_sft.py)")
            if row["answer"] != glossary[term]:
                raise DataError(f"{where}: the answer differs from the glossary's definition "
                                f"of {term!r}. Fix: rerun tools/make_medical_sft.py")
            if term in tested:
                raise DataError(f"{where}: term {term!r} is tested by eval_mc.jsonl; SFT "
                                "chats must leave the eval's terms out. Fix: drop the row "
                                "(tools/make_medical_sft.py does)")
            for key in (f"term {term!r}", f"id {row['id']!r}"):
                if seen.get(key, split) != split:
                    raise DataError(f"{where}: {key} is also in {seen[key]}.jsonl; training "
                                    "and validation chats must not share one")
                seen[key] = split


def check_data_dir(data_dir: str | Path | None = None, scenarios=SCENARIOS) -> Path:
    """The data folder, once each scenario's folder is found in it; else a `DataError` that
    says which setting to fix. Cheap: callers run it before any long work."""
    settings = get_settings()
    root = Path(data_dir or settings.data_dir)
    missing = [name for name in scenarios if not (root / name).is_dir()]
    if not missing:
        return root
    need = f"a folder holding {', '.join(n + '/' for n in SCENARIOS)}"
    if data_dir is not None:
        raise DataError(f"data_dir {root} has no {missing[0]}/ folder; pass {need}")
    if settings.data_source == "MCLAB_DATA":
        what = "is not a folder" if not root.is_dir() else f"has no {missing[0]}/ folder"
        raise DataError(
            f"MCLAB_DATA={root} {what}. Fix: point MCLAB_DATA at {need} (copy "
            f"{shipped_data_dir()} to start one), or unset MCLAB_DATA to use the data "
            "shipped with mclab.")
    raise DataError(f"the course data shipped with mclab is missing ({root} has no "
                    f"{missing[0]}/); reinstall mclab, or set MCLAB_DATA to {need}.")


def load_scenario(name: str, data_dir: str | Path | None = None) -> dict:
    """All files of one scenario as `datasets.Dataset`s, keyed by file name."""
    from datasets import Dataset

    if name not in SCHEMAS:
        raise DataError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    folder = check_data_dir(data_dir, [name]) / name
    rows = {split: read_jsonl(folder / f"{split}.jsonl", schema)
            for split, schema in SCHEMAS[name].items()}
    _check_links(name, rows, folder)
    return {split: Dataset.from_list(items) for split, items in rows.items()}


def load_company(data_dir=None) -> dict:
    return load_scenario("company", data_dir)


def load_medical(data_dir=None) -> dict:
    return load_scenario("medical", data_dir)


def load_local(data_dir=None) -> dict:
    return load_scenario("local", data_dir)


def subset(dataset, n: int | None):
    """`n` rows spread evenly over the set (a `datasets.Dataset` or a list; all when n is
    None or larger).

    How quick mode shrinks data: evenly spaced rows keep every part of the set in play,
    where the first `n` rows would test only the first few documents.
    """
    if n is None or n >= len(dataset):
        return dataset
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    keep = [i * len(dataset) // n for i in range(n)]
    return dataset.select(keep) if hasattr(dataset, "select") else [dataset[i] for i in keep]
