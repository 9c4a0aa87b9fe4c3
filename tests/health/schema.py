"""A JSON schema of the health check draft's answer, written from draft-inadarei-api-health-check,
and the stricter rules of the extension's own answers on top of it.

The draft (section 3): ``status`` is required, ``pass``, ``warn`` or ``fail`` (it
also names aliases, which the extension never sends); ``version``, ``releaseId``,
``serviceId``, ``description`` are strings; ``notes`` an array of strings;
``output`` a string that SHOULD be omitted on ``pass``; ``links`` an object of
URIs; ``checks`` an object whose keys are ``componentName:measurementName``
(neither part holding a colon) and whose values are arrays of objects (section 4):
``componentId`` and ``componentType`` strings (``component``, ``datastore``,
``system`` or another well-known term or URI), ``observedValue`` any JSON value,
``observedUnit`` a string that SHOULD be present with ``observedValue``,
``status``, ``affectedEndpoints`` an array of URI templates, ``time`` an ISO 8601
date-time, ``output`` (omitted on ``pass``) and ``links``. Other members are
allowed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jsonschema

STATUS = {"enum": ["pass", "warn", "fail"]}
ISO_8601 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
NOT_ON_PASS = {
    "if": {"properties": {"status": {"const": "pass"}}, "required": ["status"]},
    "then": {"not": {"anyOf": [{"required": ["output"]}, {"required": ["affectedEndpoints"]}]}},
}

CHECK = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "componentId": {"type": "string"},
        "componentType": {"type": "string", "minLength": 1},
        "observedUnit": {"type": "string"},
        "status": STATUS,
        "affectedEndpoints": {"type": "array", "items": {"type": "string"}},
        "time": {"type": "string", "pattern": ISO_8601},
        "output": {"type": "string"},
        "links": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "dependentRequired": {"observedValue": ["observedUnit"]},
    **NOT_ON_PASS,
}

DRAFT = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Health Check Response Format for HTTP APIs",
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": STATUS,
        "version": {"type": "string"},
        "releaseId": {"type": "string"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "output": {"type": "string"},
        "serviceId": {"type": "string"},
        "description": {"type": "string"},
        "links": {"type": "object", "additionalProperties": {"type": "string"}},
        "checks": {
            "type": "object",
            "propertyNames": {"pattern": "^[^:]+(:[^:]+)?$"},
            "additionalProperties": {"type": "array", "minItems": 1, "items": CHECK},
        },
    },
    **NOT_ON_PASS,
}

NO_NULL = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:flask-resilience:test:no-null",  # its own resource: the $ref below stays in it
    "$defs": {
        "value": {
            "not": {"type": "null"},
            "items": {"$ref": "#/$defs/value"},
            "additionalProperties": {"$ref": "#/$defs/value"},
        }
    },
    "$ref": "#/$defs/value",
}

OURS = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "allOf": [DRAFT, NO_NULL],
    "properties": {
        "checks": {
            "additionalProperties": {
                "items": {"required": ["status", "componentType", "time"]},
            }
        }
    },
}
"""The extension's answers: the draft's format, no null anywhere, and every check
naming its component type and the time of its reading."""

PUBLIC = {
    "allOf": [OURS],
    "properties": {
        "checks": {"additionalProperties": {"items": {"not": {"required": ["output"]}}}}
    },
}
"""The public answers: no check's output, whatever its status."""

for _schema in (DRAFT, NO_NULL, OURS):
    jsonschema.Draft202012Validator.check_schema(_schema)


def validate(body: Any, *, public: bool = True) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``body`` is one of the extension's answers."""
    jsonschema.Draft202012Validator(PUBLIC if public else OURS).validate(body)
    assert_no_epoch(body)


def assert_no_epoch(value: Any, key: str = "") -> None:
    """Every ``time`` and ``*_at`` member is an ISO 8601 string, never a Unix time."""
    if isinstance(value, dict):
        for name, item in value.items():
            assert_no_epoch(item, name)
    elif isinstance(value, list):
        for item in value:
            assert_no_epoch(item, key)
    elif key == "time" or key.endswith("_at"):
        assert isinstance(value, str), f"{key} is {value!r}, not an ISO 8601 time"
        datetime.fromisoformat(value.replace("Z", "+00:00"))
