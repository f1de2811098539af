"""How big a query is: depth, aliases, and how many nodes it could return.

The node count is GitHub's: for each field that returns a bounded number of items (first/last/
limit, given or by default; a connection without them counts its default page; `nodes(ids:)`
counts its ids), the product of those numbers along its path, summed over the document.
Variables count with their values, so it is measured per request; depth and aliases depend on
the document only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
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


def _page_size(field: FieldNode, definition: Any, variables: dict[str, Any], default: int | None) -> int | None:
    """How many items the field can return: its first/last/limit (given, else the argument's
    default), or the length of its `ids` list (`nodes(ids:)`); `default` when none applies."""
    given = {arg.name.value: arg.value for arg in field.arguments or ()}
    for name in (*PAGE_ARGUMENTS, "ids"):
        value = given.get(name)
        if isinstance(value, VariableNode):
            value = variables.get(value.name.value)
        elif isinstance(value, IntValueNode):
            value = int(value.value)
        elif isinstance(value, ListValueNode):
            value = value.values
        if name == "ids" and isinstance(value, (list, tuple)):
            return len(value)
        if isinstance(value, int):
            return value
    for name in PAGE_ARGUMENTS:
        argument = definition.args.get(name) if definition is not None else None
        if argument is not None and isinstance(argument.default_value, int):
            return argument.default_value
    return default


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
                size = _page_size(selection, definition, variables, DEFAULT_PAGE_SIZE if is_connection else None)
                child_multiplier = multiplier
                if size is not None:
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
