"""Python annotations -> JSON Schema, every pydantic model once under ``components/schemas``.

Schemas are asked for while the document is built and filled in by one ``resolve()``
call, so pydantic sees every annotation together: a model used by several handlers is one
definition, and two models that share a name get distinct ones.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaValue

REF_TEMPLATE = "#/components/schemas/{model}"
Mode = Literal["validation", "serialization"]


def _no_schema(annotation: Any) -> dict[str, Any]:
    return {"description": f"no JSON Schema for {_name(annotation)}"}


def _name(annotation: Any) -> str:
    return getattr(annotation, "__qualname__", None) or repr(annotation)


def is_any(annotation: Any) -> bool:
    """True for what accepts every value: no annotation, ``Any`` or ``object``."""
    return annotation is None or annotation is Any or annotation is object


class SchemaRegistry:
    """Collects annotations, then turns them into JSON Schemas in one pydantic call."""

    def __init__(self) -> None:
        self._pending: list[tuple[int, Mode, TypeAdapter[Any], dict[str, Any]]] = []
        self.definitions: dict[str, Any] = {}
        """``components/schemas``, filled by ``resolve()``."""

    def schema(self, annotation: Any, mode: Mode) -> dict[str, Any]:
        """The schema of ``annotation``: an empty dict now, filled in by ``resolve()``.

        ``validation`` for what the server reads, ``serialization`` for what it sends.
        An annotation pydantic cannot describe becomes a schema that admits anything.
        """
        slot: dict[str, Any] = {}
        if is_any(annotation):
            return slot
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(annotation)
            adapter.json_schema(mode=mode)  # fail here, alone, rather than in the batch
        except Exception:
            slot.update(_no_schema(annotation))
            return slot
        self._pending.append((len(self._pending), mode, adapter, slot))
        return slot

    def accepts_none(self, annotation: Any) -> bool:
        """True when validating ``None`` against ``annotation`` succeeds."""
        if is_any(annotation):
            return True
        try:
            TypeAdapter(annotation).validate_python(None)
        except Exception:
            return False
        return True

    def resolve(self) -> None:
        """Fill every slot handed out and ``definitions``."""
        if not self._pending:
            return
        inputs = [(key, mode, adapter) for key, mode, adapter, _ in self._pending]
        schemas, definitions = TypeAdapter.json_schemas(inputs, ref_template=REF_TEMPLATE)
        for key, mode, _, slot in self._pending:
            slot.update(draft7(schemas[(key, mode)]))
        for name, definition in definitions.get("$defs", {}).items():
            self.definitions[name] = draft7(definition)
        self._pending.clear()


def draft7(schema: JsonSchemaValue) -> Any:
    """``schema`` in the JSON Schema draft the AsyncAPI Schema Object extends (draft 07).

    Pydantic writes draft 2020-12; the one keyword of it that draft 07 reads differently is
    ``prefixItems`` (tuples), which becomes the array form of ``items``.
    """
    if isinstance(schema, list):
        return [draft7(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: draft7(value) for key, value in schema.items()}
    if isinstance(converted.get("prefixItems"), list):
        tail = converted.pop("items", False)
        converted["items"] = converted.pop("prefixItems")
        converted["additionalItems"] = tail
    return converted
