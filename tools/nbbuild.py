"""Edit a solutions/ notebook as plain text, for authors who prefer an editor (optional).

The text format (jupytext's "percent" format): cells separated by lines `# %% [markdown]` or
`# %%`; code bodies as-is; markdown lines commented with a leading "# " (stripped on build).
    python tools/nbbuild.py --extract solutions/00_foundation_model.ipynb /tmp/00.py
    python tools/nbbuild.py /tmp/00.py solutions/00_foundation_model.ipynb
Then run `python tools/make_student.py` to refresh notebooks/.
"""

import re
import sys

import nbformat


def build(text: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.nbformat_minor = 4  # no random cell ids: regenerating gives the same file
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python",
                                  "name": "python3"},
                   "language_info": {"name": "python"}}
    parts = re.split(r"^# %%( \[markdown\])?[ \t]*\n", text, flags=re.M)
    # parts: [preamble, marker, body, marker, body, ...]
    for marker, body in zip(parts[1::2], parts[2::2]):
        body = body.strip("\n")
        if not body:
            continue
        if marker:
            lines = [line[2:] if line.startswith("# ") else line.lstrip("#")
                     for line in body.split("\n")]
            nb.cells.append(nbformat.v4.new_markdown_cell("\n".join(lines)))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(body))
    for cell in nb.cells:
        cell.pop("id", None)
    return nb


def extract(nb: nbformat.NotebookNode) -> str:
    chunks = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            body = "\n".join(f"# {line}".rstrip() for line in cell.source.split("\n"))
            chunks.append(f"# %% [markdown]\n{body}\n")
        else:
            chunks.append(f"# %%\n{cell.source}\n")
    return "\n".join(chunks)


if __name__ == "__main__":
    if sys.argv[1] == "--extract":
        text = extract(nbformat.read(sys.argv[2], as_version=4))
        with open(sys.argv[3], "w", encoding="utf-8") as handle:
            handle.write(text)
        sys.exit(0)
    source, target = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as handle:
        nb = build(handle.read())
    nbformat.write(nb, target)
    print(f"wrote {target} ({len(nb.cells)} cells)")
