"""Print the pyproject.toml ranges of the fast-moving libraries, for `make test-latest`."""

import re
import sys
import tomllib
from pathlib import Path

DRIFTERS = ("transformers", "trl", "peft", "datasets")

deps = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
specs = [d for d in deps["project"]["dependencies"]
         if re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower() in DRIFTERS]
if len(specs) != len(DRIFTERS):
    sys.exit(f"pyproject.toml lacks one of {DRIFTERS}")
# one word per spec: the Makefile splits $(...) on spaces and passes the words to pip as they are
print(" ".join(s.replace(" ", "") for s in specs))
