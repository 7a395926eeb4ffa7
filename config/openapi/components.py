"""Hand-written schema components, for the bodies whose shape no serializer states (job queries, HE
manifests, the key holder's release spec), and the fields and serializers that refer to them.

:func:`register_component` declares a component; :class:`JsonSchemaField`, :class:`MethodField` and
:func:`component_serializer` put it (and every component it refers to) into the document where used.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import serializers

from config.openapi.fields import document_field

_COMPONENTS: dict[str, dict] = {}


def register_component(name: str, schema: dict) -> dict:
    """Declare a schema component; returns its ``$ref``. Components may refer to one another."""
    _COMPONENTS[name] = schema
    return ref(name)


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        target = node.get("$ref")
        if isinstance(target, str) and target.startswith("#/components/schemas/"):
            yield target.rsplit("/", 1)[1]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def use_component(auto_schema, name: str) -> dict:
    """Put a hand-written component, and every component it refers to, into the document."""
    pending, seen = [name], set()
    while pending:
        current = pending.pop()
        if current in seen or current not in _COMPONENTS:
            continue
        seen.add(current)
        # A copy: drf-spectacular's hooks rewrite component schemas in place (enums become components).
        component = ResolvedComponent(
            name=current, type=ResolvedComponent.SCHEMA, schema=copy.deepcopy(_COMPONENTS[current]), object=current
        )
        auto_schema.registry.register_on_missing(component)
        pending.extend(refs(_COMPONENTS[current]))
    return ref(name)


class JsonSchemaField(serializers.JSONField):
    """Any JSON value, documented by the hand-written component ``component``; the view or the
    service checks it (and says which part is wrong)."""

    def __init__(self, *, component: str, **kwargs):
        self.component = component
        super().__init__(**kwargs)

    def openapi_schema(self, auto_schema, direction) -> dict:
        target = use_component(auto_schema, self.component)
        return {"allOf": [target], "nullable": True} if self.allow_null else target


class MethodField(serializers.SerializerMethodField):
    """A SerializerMethodField documented by a hand-written component (``component``) or schema."""

    def __init__(self, *, component: str | None = None, schema: dict | None = None, **kwargs):
        self.component, self.schema = component, schema
        super().__init__(**kwargs)

    def openapi_schema(self, auto_schema, direction) -> dict:
        if self.component is not None:
            target = use_component(auto_schema, self.component)
            return {"allOf": [target], "nullable": True} if self.allow_null else target
        return component_schema(auto_schema, copy.deepcopy(self.schema or {}))


document_field(MethodField)


def component_schema(auto_schema, node: dict) -> dict:
    """``node`` with every hand-written component it refers to put into the document."""
    for name in refs(node):
        use_component(auto_schema, name)
    return node


class ComponentSerializer(serializers.Serializer):
    """A body documented by a hand-written component (``component``), for the answers whose shape a
    service builds (``component_serializer("HeKeyPlan")``). Use it for every mention of that component."""

    component: str = ""


def component_serializer(component: str) -> type[ComponentSerializer]:
    if component not in _COMPONENTS:
        raise ValueError(f"no component {component!r}")
    return type(f"{component}Serializer", (ComponentSerializer,), {"component": component, "__module__": __name__})


class _ComponentSerializerExtension(OpenApiSerializerExtension):
    target_class = ComponentSerializer
    match_subclasses = True

    def get_name(self, auto_schema, direction):
        return self.target.component

    def map_serializer(self, auto_schema, direction):
        return component_schema(auto_schema, copy.deepcopy(_COMPONENTS[self.target.component]))


document_field(JsonSchemaField)
