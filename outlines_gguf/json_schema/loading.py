"""Loading a schema (JSON text, dict or Pydantic model) and putting it in canonical form."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from outlines_gguf.errors import ConstraintTooComplexError, SchemaError
from outlines_gguf.json_schema.dialects import drop_undefined_keywords, ignore_ref_siblings
from outlines_gguf.json_schema.documents import embed_documents
from outlines_gguf.json_schema.lenient import drop_unenforceable_patterns
from outlines_gguf.json_schema.refs import localize_refs
from outlines_gguf.json_schema.unevaluated import rewrite_unevaluated


def load_schema(schema: Any) -> tuple[Any, bool]:
    """Accept a Pydantic model class, a dict/bool, or JSON text; returns (schema, is_pydantic)."""
    if isinstance(schema, type):
        dump = getattr(schema, "model_json_schema", None)
        if dump is None:
            raise SchemaError(f"{schema.__name__} is not a Pydantic model")
        return dump(), True
    if isinstance(schema, str):
        try:
            return json.loads(schema), False
        except json.JSONDecodeError as exc:
            raise SchemaError(f"the schema is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise ConstraintTooComplexError("the schema is nested too deeply") from exc
    if isinstance(schema, (dict, bool)):
        return schema, False
    raise SchemaError(
        f"a schema must be a Pydantic model, a dict or a JSON string, got {type(schema).__name__}"
    )


def prepare_schema(
    schema: Any,
    extra_properties: bool | None = None,
    refs: Mapping[str, Any] | None = None,
    lenient: bool = False,
) -> tuple[str, bool | None]:
    """The schema's canonical JSON text and the effective ``extra_properties``
    (a Pydantic model gets no extra properties unless asked: Pydantic ignores them).
    ``refs``: other documents by URI (:mod:`~outlines_gguf.json_schema.documents`).
    ``lenient``: patterns no automaton can enforce are left out (:mod:`.lenient`)."""
    root, is_pydantic = load_schema(schema)
    if extra_properties is None and is_pydantic:
        extra_properties = False
    try:
        localized = localize_refs(embed_documents(drop_undefined_keywords(root), refs))
        root = rewrite_unevaluated(ignore_ref_siblings(localized))
        if lenient:
            root = drop_unenforceable_patterns(root)
    except RecursionError as exc:
        raise ConstraintTooComplexError("the schema is nested too deeply") from exc
    except SchemaError:
        raise
    except (TypeError, ValueError) as exc:  # (a set, an object as a key: no JSON)
        raise SchemaError(f"the schema is not plain JSON: {exc}") from exc
    return canonical_schema(root), extra_properties


def canonical_schema(root: Any) -> str:
    """The schema as JSON text (the cache key). Key order is kept: property order is generation order."""
    try:
        return json.dumps(root, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"the schema is not plain JSON: {exc}") from exc
    except RecursionError as exc:
        raise ConstraintTooComplexError("the schema is nested too deeply") from exc
