"""Write ``outlines_gguf/json_schema/format_tables.npz``: the string formats' automata shipped
with the package (see ``outlines_gguf/json_schema/format_tables.py``). Run it after changing a
format's regex or how JSON string characters are compiled; the format-tables test says when.

    .venv/bin/python scripts/build_format_tables.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from outlines_gguf.json_schema.format_tables import TABLES, write_tables

if __name__ == "__main__":
    for name, states in write_tables().items():
        print(f"{name}: {states} states")
    print(f"written to {TABLES}")
