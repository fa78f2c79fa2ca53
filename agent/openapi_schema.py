"""Helpers shared by the OpenAPI documents of the till API and the reference back office.

Component schemas come from the same pydantic models that validate requests,
so a document cannot drift from what the server accepts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

REF_TEMPLATE = "#/components/schemas/{model}"


def component_schemas(models: Iterable[type[BaseModel]]) -> dict[str, Any]:
    """``components.schemas`` for ``models`` and every model they reference, sorted."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF_TEMPLATE)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return dict(sorted(schemas.items()))


def ref(name: str) -> dict[str, str]:
    """A JSON reference to the component schema ``name``."""
    return {"$ref": REF_TEMPLATE.format(model=name)}
