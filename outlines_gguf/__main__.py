"""``python -m outlines_gguf``: the ``outlines-gguf`` command line."""

from .cli import main

raise SystemExit(main())
