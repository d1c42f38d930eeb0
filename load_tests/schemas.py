"""The JSON schemas the structured-output measurements share (load_tests.llm --structured,
load_tests.schema_compile, load_tests.structured_goal): a 3-field person, a nested order with
arrays, a large flat record of 50 properties, and a get_weather tool.

`variant(schema, k)` is the same schema with its first property renamed (`name` ->
`name_k`): the same size and shape, a different cache key, so each variant is compiled cold.
"""

from __future__ import annotations

import copy
from typing import Any

PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "city": {"type": "string"},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}

_ADDRESS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "street": {"type": "string"},
        "city": {"type": "string"},
        "postcode": {"type": "string", "pattern": "^[0-9]{5}$"},
        "country": {"type": "string", "enum": ["FR", "DE", "GB", "US", "JP"]},
    },
    "required": ["street", "city", "postcode", "country"],
    "additionalProperties": False,
}

ORDER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "customer": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "email": {"type": "string"},
                "address": _ADDRESS,
            },
            "required": ["name", "email", "address"],
            "additionalProperties": False,
        },
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": 20,
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "quantity": {"type": "integer", "minimum": 1},
                    "unit_price": {"type": "number"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["sku", "quantity", "unit_price"],
                "additionalProperties": False,
            },
        },
        "status": {"type": "string", "enum": ["new", "paid", "shipped", "delivered"]},
        "gift": {"type": "boolean"},
    },
    "required": ["order_id", "customer", "items", "status"],
    "additionalProperties": False,
}


def _large(count: int = 50) -> dict[str, Any]:
    """A flat record of `count` properties, cycling through string, integer, number, boolean,
    enum, bounded string and array of strings."""
    kinds: list[dict[str, Any]] = [
        {"type": "string"},
        {"type": "integer"},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "string", "enum": ["low", "medium", "high"]},
        {"type": "string", "maxLength": 40},
        {"type": "array", "items": {"type": "string"}, "maxItems": 5},
    ]
    props = {f"field_{i:02d}": dict(kinds[i % len(kinds)]) for i in range(count)}
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


LARGE: dict[str, Any] = _large()

SCHEMAS: dict[str, dict[str, Any]] = {"person": PERSON, "order": ORDER, "large": LARGE}

GET_WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


def count_properties(schema: Any) -> int:
    """Properties declared anywhere in the schema (nested objects and array items included)."""
    if isinstance(schema, dict):
        own = len(schema.get("properties", {})) if isinstance(schema.get("properties"), dict) else 0
        return own + sum(count_properties(v) for v in schema.values())
    if isinstance(schema, list):
        return sum(count_properties(v) for v in schema)
    return 0


def variant(schema: dict[str, Any], k: int) -> dict[str, Any]:
    """`schema` with its first top-level property renamed to `<name>_<k>` (and in `required`)."""
    out = copy.deepcopy(schema)
    first = next(iter(out["properties"]))
    renamed = f"{first}_{k}"
    out["properties"] = {
        (renamed if key == first else key): value for key, value in out["properties"].items()
    }
    out["required"] = [renamed if key == first else key for key in out.get("required", [])]
    return out


def example(schema: dict[str, Any]) -> Any:
    """A small instance of one of these schemas (every property, in order; one array item):
    what a constrained answer could be, for timing a grammar over a whole answer."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {key: example(value) for key, value in schema["properties"].items()}
    if kind == "array":
        return [example(schema["items"])]
    if kind == "string":
        return "12345" if "pattern" in schema else "Ada Lovelace"
    if kind == "integer":
        return 42
    if kind == "number":
        return 3.5
    if kind == "boolean":
        return True
    raise ValueError(f"no example for {schema!r}")


def response_format(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """The OpenAI chat completions `response_format` that asks for `schema`."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
