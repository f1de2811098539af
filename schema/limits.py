"""How big a query is: depth, aliases, and how many nodes it could return.

The node count is GitHub's: for each connection (or list field with first/last/limit), the
product of the page sizes along its path, summed over the document. Variables count with their
values, so it is measured per request; depth and aliases depend on the document only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
)

from app.services.pagination import DEFAULT_PAGE_SIZE

PAGE_ARGUMENTS = ("first", "last", "limit")


@dataclass
class Measure:
    depth: int = 0
    aliases: int = 0
    nodes: int = 0


def _page_size(field: FieldNode, variables: dict[str, Any], default: int | None) -> int | None:
    for arg in field.arguments or ():
        if arg.name.value in PAGE_ARGUMENTS:
            value = arg.value
            if isinstance(value, IntValueNode):
                return int(value.value)
            if isinstance(value, VariableNode):
                found = variables.get(value.name.value)
                return found if isinstance(found, int) else default
    return default


def _is_list(type_: Any) -> bool:
    while isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


def measure(
    schema: GraphQLSchema, operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
) -> Measure:
    out = Measure()
    root = schema.get_root_type(operation.operation)

    def walk(selection_set: SelectionSetNode | None, parent: Any, depth: int, multiplier: int, seen: frozenset[str]) -> None:
        if selection_set is None:
            return
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                if selection.alias is not None:
                    out.aliases += 1
                if name.startswith("__"):
                    continue
                out.depth = max(out.depth, depth + 1)
                definition = parent.fields.get(name) if isinstance(parent, GraphQLObjectType) else None
                if definition is None and hasattr(parent, "fields"):
                    definition = parent.fields.get(name)
                child_type = get_named_type(definition.type) if definition else None
                is_connection = bool(child_type and child_type.name.endswith("Connection"))
                size = _page_size(selection, variables, DEFAULT_PAGE_SIZE if is_connection else None)
                child_multiplier = multiplier
                if size is not None and (is_connection or (definition and _is_list(definition.type))):
                    child_multiplier = multiplier * max(size, 1)
                    out.nodes += child_multiplier
                walk(selection.selection_set, child_type, depth + 1, child_multiplier, seen)
            elif isinstance(selection, InlineFragmentNode):
                target = schema.get_type(selection.type_condition.name.value) if selection.type_condition else parent
                walk(selection.selection_set, target, depth, multiplier, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is not None and name not in seen:
                    target = schema.get_type(fragment.type_condition.name.value)
                    walk(fragment.selection_set, target, depth, multiplier, seen | {name})

    walk(operation.selection_set, root, 0, 1, frozenset())
    return out
