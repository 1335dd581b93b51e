"""``python -m outlines_gguf``: the ``outlines-gguf`` command line."""

from outlines_gguf.cli import main

raise SystemExit(main())
