"""Other documents a schema refers to, embedded in it so that its references resolve inside.

A ``$ref`` to another document (``"https://json-schema.org/draft/2020-12/schema"``,
``"common.json#/$defs/id"``) can only be followed where that document is at hand: nothing is
ever fetched. Two sources are: the JSON Schema meta-schemas of drafts 4, 6, 7, 2019-09 and
2020-12 with their vocabularies (shipped with the package, ``metaschemas/``), and the
documents a caller passes (``refs={uri: schema}``, which win over the shipped ones).
:func:`embed_documents` copies each document the references reach (and those its own
references reach, and so on) under ``$defs`` of the root (:data:`EMBEDDED_PREFIX`), with its
URI as ``$id``, so that :func:`~outlines_gguf.json_schema.refs.localize_refs` resolves every
reference into it as it does for an embedded resource. References to other documents stay
as written (refused).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urldefrag

from outlines_gguf.errors import SchemaError
from outlines_gguf.json_schema.refs import external_documents

EMBEDDED_PREFIX = "x-outlines-gguf-document "
"""The ``$defs`` entries of the embedded documents are named this and their URI."""

MAX_DOCUMENTS = 64
"""At most this many documents embedded into one schema."""


_OTHER_DOCUMENT = re.compile(r'"\$(?:ref|dynamicRef|recursiveRef)": "(?!#)')
"""A reference that may lead to another document (one starting with ``#`` never does)."""


@cache
def metaschemas() -> dict[str, Any]:
    """The shipped meta-schemas, by URI (without fragment)."""
    text = resources.files("outlines_gguf.json_schema").joinpath("metaschemas/metaschemas.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def embed_documents(root: Any, refs: Mapping[str, Any] | None = None) -> Any:
    """``root`` with the documents its references reach embedded (a copy where any are; ``root``
    is never modified). ``refs``: documents by URI, besides the shipped meta-schemas."""
    given = {}
    for uri, document in (refs or {}).items():
        if not isinstance(uri, str):
            raise SchemaError(f"refs: a document's URI must be a string, got {uri!r}")
        if not isinstance(document, (dict, bool)):
            raise SchemaError(f"refs[{uri!r}]: a document must be a schema (an object or a boolean)")
        given[urldefrag(uri)[0]] = document
    if not isinstance(root, dict):
        return root
    try:
        text = json.dumps(root)
    except (TypeError, ValueError):
        return root  # (not plain JSON: canonical_schema says so)
    if not _OTHER_DOCUMENT.search(text):
        return root  # (a reference starting "#" stays in its document: no walk needed)
    known = {**metaschemas(), **given}
    embedded: dict[str, Any] = {}
    current = root
    while True:
        missing = [uri for uri in external_documents(current) if uri in known and uri not in embedded]
        if not missing:
            break
        for uri in missing:
            if len(embedded) >= MAX_DOCUMENTS:
                raise SchemaError(f"the schema refers to more than {MAX_DOCUMENTS} other documents")
            embedded[uri] = _with_id(known[uri], uri)
        defs = root.get("$defs", {})
        if not isinstance(defs, dict):
            return root  # (a malformed $defs: the compiler says so)
        entries = {EMBEDDED_PREFIX + uri: document for uri, document in embedded.items()}
        current = {**root, "$defs": {**defs, **entries}}
    return current


def _with_id(document: Any, uri: str) -> Any:
    """``document`` as a resource of that URI (a boolean schema becomes its object form)."""
    if document is True:
        return {"$id": uri}
    if document is False:
        return {"$id": uri, "not": {}}
    out = {k: v for k, v in document.items() if k != "id" or not isinstance(v, str)}
    out["$id"] = uri
    return out
