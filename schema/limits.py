"""How big a query is, measured in time linear in the document, each check before the work it
protects.

- `check_source`, before the parser: the text's length, its lines, and its tokens counted by one
  regular expression that stops at the limit (graphql-core enforces its own token limit while it
  parses, at about 10 µs a token, so refusing a 10 MB document would cost the parse of 20,000
  tokens). Lines, because graphql-core finds an error's line by scanning the text from its
  start, for every error: 150 unknown fields after 400,000 blank lines cost 15 s to report.
- `Shape` and `check_shape`, after parsing and before graphql-core's validation, some of whose
  rules are super-linear (OverlappingFieldsCanBeMerged compares every pair of fields that share a
  response key, through every fragment): the document alone, as if every fragment spread were
  inlined, but without inlining anything: each fragment is costed once, after the fragments it
  spreads, and its cost added at every spread. A chain of fragments that each spread the one
  before twice thus costs what its text costs, and is refused for the billions of selections it
  stands for.
- `count_nodes`, after validation, since page sizes may be variables: GitHub's node count. For
  each field that returns a bounded number of items (first/last/limit, given or by default; a
  connection without them counts its default page; `nodes(ids:)` counts its ids), the product of
  those numbers along its path, summed over the operation. A fragment's count is linear in the
  multiplier of the place it is spread in, so it is counted once, at multiplier 1, and scaled.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from itertools import islice
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
)

from app.config import Settings
from app.services.pagination import DEFAULT_PAGE_SIZE

TOO_COMPLEX = "QUERY_TOO_COMPLEX"
PAGE_ARGUMENTS = ("first", "last", "limit")

# One match per token of the GraphQL grammar, possessive so that no text makes it backtrack. A
# document graphql-core accepts has at least as many tokens as matches (a comment counts, as it
# does for graphql-core's max_tokens), so no document under that limit is refused here.
_TOKEN = re.compile(
    r'"""(?:[^"\\]++|\\"""|\\|"(?!""))*+"""'  # block string
    r'|"(?:[^"\\\n\r]++|\\.)*+"'  # string
    r"|#[^\n\r]*+"  # comment
    r"|[_A-Za-z][_0-9A-Za-z]*+"  # name
    r"|-?[0-9][_0-9A-Za-z.+-]*+"  # number (and whatever sticks to it, for the parser to refuse)
    r"|\.\.\."  # spread
    r"|[^\s,\ufeff]"  # punctuator (or a character the parser will refuse)
)


@dataclass(frozen=True)
class Limits:
    """The settings the checks read (hashable: checked documents are cached by them)."""

    max_document_chars: int
    max_document_lines: int
    max_tokens: int
    max_fragments: int
    max_selections: int
    max_merged_fields: int
    max_object_fragments: int
    max_directives_per_location: int
    max_directives: int
    max_depth: int
    max_aliases: int
    max_nodes: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits of `settings`, made once per settings object (every request asks)."""
        made = _made.get(id(settings))
        if made is None or made[0] is not settings:
            made = _made[id(settings)] = (settings, cls(**{f.name: getattr(settings, f.name) for f in fields(cls)}))
        return made[1]


_made: dict[int, tuple[Settings, Limits]] = {}


def too_complex(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": TOO_COMPLEX})


def check_source(text: str, limits: Limits) -> GraphQLError | None:
    """A text too long or of too many tokens to be worth parsing."""
    if len(text) > limits.max_document_chars:
        return too_complex(
            f"The document has {len(text):,} characters, more than the maximum of {limits.max_document_chars:,}; "
            "send long values as variables"
        )
    lines = text.count("\n") + text.count("\r") - text.count("\r\n")
    if lines > limits.max_document_lines:
        return too_complex(
            f"The document has {lines:,} lines, more than the maximum of {limits.max_document_lines:,}"
        )
    if len(text) > limits.max_tokens:  # else it cannot have more tokens than characters
        tokens = sum(1 for _ in islice(_TOKEN.finditer(text), limits.max_tokens + 1))
        if tokens > limits.max_tokens:
            return too_complex(f"The document has more than {limits.max_tokens:,} tokens, the maximum")
    return None


# ------------------------------------------------------------------ the document's shape


@dataclass
class Cost:
    """What a selection set amounts to with every fragment spread inlined."""

    selections: int = 0  # fields, inline fragments and fragment spreads
    aliases: int = 0
    directives: int = 0
    depth: int = 0  # nesting of fields, introspection fields (`__schema`...) not counted

    def add(self, other: Cost) -> None:
        self.selections += other.selections
        self.aliases += other.aliases
        self.directives += other.directives
        self.depth = max(self.depth, other.depth)


@dataclass
class Merging:
    """The most that merges into one object: fields of one response key, and fragments."""

    key: str = ""
    fields: int = 0
    fragments: int = 0

    def max(self, other: Merging) -> Merging:
        most = self if self.fields >= other.fields else other
        return Merging(most.key, most.fields, max(self.fragments, other.fragments))


@dataclass
class Shape:
    """A document's operations and fragments, the fragments in an order where those a fragment
    spreads come before it, and what each definition amounts to; or why the document is invalid
    in a way that graphql-core would report only after rules that follow the spreads (a fragment
    defined twice, never used, or spreading itself)."""

    operations: list[OperationDefinitionNode]
    fragments: dict[str, FragmentDefinitionNode] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    fragment_costs: dict[str, Cost] = field(default_factory=dict)
    operation_costs: list[Cost] = field(default_factory=list)
    most_directives: int = 0  # on one node
    invalid: GraphQLError | None = None
    _merging: dict[tuple[int, int], Merging] = field(default_factory=dict, init=False, repr=False)
    _counts: dict[Any, int] = field(default_factory=dict, init=False, repr=False)
    "Node counts by operation and the values of the variables they read (see `count_nodes`)."
    _sizing: set[str] | None = field(default=None, init=False, repr=False)

    @classmethod
    def of(cls, document: DocumentNode) -> Shape:
        """In time linear in the document's text."""
        shape = cls([d for d in document.definitions if isinstance(d, OperationDefinitionNode)])
        for definition in document.definitions:
            if isinstance(definition, FragmentDefinitionNode):
                name = definition.name.value
                if name in shape.fragments:
                    shape.invalid = GraphQLError(f"There can be only one fragment named '{name}'.", definition.name)
                    return shape
                shape.fragments[name] = definition
        shape.invalid = shape._order_fragments()
        if shape.invalid is not None:
            return shape
        for name in shape.order:
            fragment = shape.fragments[name]
            cost = shape._cost(fragment.selection_set)
            cost.directives += shape._directives(fragment)
            shape.fragment_costs[name] = cost
        for operation in shape.operations:
            cost = shape._cost(operation.selection_set)
            cost.directives += shape._directives(operation)
            for variable in operation.variable_definitions or ():
                shape._directives(variable)
            shape.operation_costs.append(cost)
        return shape

    def operation(self, name: str | None) -> OperationDefinitionNode | None:
        """The operation a request with this operation name runs."""
        if name is None:
            return self.operations[0] if len(self.operations) == 1 else None
        return next((o for o in self.operations if o.name and o.name.value == name), None)

    @property
    def selections(self) -> int:
        """Of every operation, fragments inlined: validation checks them all."""
        return sum(c.selections for c in self.operation_costs)

    def merging(self, limits: Limits) -> Merging:
        """What merges into one object (fragments inlined, each once per object, as execution
        collects them), looked for until past the limits: validation compares every pair of
        fields that answer one response key, and every pair of fragments spread into one
        object, so their numbers bound its work. Linear in `selections`: call it once those are
        known to be few."""
        key = (limits.max_merged_fields, limits.max_object_fragments)
        if key not in self._merging:
            most = Merging()
            for operation in self.operations:
                most = most.max(self._merged(operation, limits))
            self._merging[key] = most
        return self._merging[key]

    # -------------------------------------------------------------- helpers

    def _order_fragments(self) -> GraphQLError | None:
        """Depth first from the operations' spreads, each fragment after those it spreads."""
        spreads = {name: [s for s in _spreads(f.selection_set) if s.name.value in self.fragments]
                   for name, f in self.fragments.items()}
        done: set[str] = set()
        roots = [s.name.value for o in self.operations for s in _spreads(o.selection_set)]
        for root in roots:
            if root not in self.fragments or root in done:
                continue
            path: list[tuple[str, Iterator[FragmentSpreadNode]]] = [(root, iter(spreads[root]))]
            on_path = {root: 0}  # a fragment's place in the path
            while path:
                current, pending = path[-1]
                spread = next(pending, None)
                if spread is None:
                    path.pop()
                    del on_path[current]
                    done.add(current)
                    self.order.append(current)
                    continue
                target = spread.name.value
                if target in on_path:
                    loop = [f"'{name}'" for name, _ in path[on_path[target] + 1:]]
                    via = ", ".join(loop[:10] + ["..."] * (len(loop) > 10))
                    return GraphQLError(
                        f"Cannot spread fragment '{target}' within itself" + (f" via {via}." if via else "."), spread
                    )
                if target not in done:
                    on_path[target] = len(path)
                    path.append((target, iter(spreads[target])))
        unused = next((f for name, f in self.fragments.items() if name not in done), None)
        return None if unused is None else GraphQLError(f"Fragment '{unused.name.value}' is never used.", unused)

    def _directives(self, node: Any) -> int:
        count = len(node.directives or ())
        self.most_directives = max(self.most_directives, count)
        return count

    def _cost(self, selection_set: SelectionSetNode) -> Cost:
        """The fragments it spreads are costed already (`fragment_costs`)."""
        cost = Cost()
        for selection in selection_set.selections:
            cost.selections += 1
            cost.directives += self._directives(selection)
            if isinstance(selection, FieldNode):
                cost.aliases += selection.alias is not None
                below = self._cost(selection.selection_set) if selection.selection_set else Cost()
                below.depth = 0 if selection.name.value.startswith("__") else below.depth + 1
                cost.add(below)
            elif isinstance(selection, InlineFragmentNode):
                cost.add(self._cost(selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                cost.add(self.fragment_costs.get(selection.name.value, Cost()))
        return cost

    def _merged(self, operation: OperationDefinitionNode, limits: Limits) -> Merging:
        most = Merging()
        objects: list[list[SelectionSetNode]] = [[operation.selection_set]]
        while objects:
            counts: dict[str, int] = {}
            below: dict[str, list[SelectionSetNode]] = {}
            selected, fragments = self._collect(objects.pop())
            most.fragments = max(most.fragments, fragments)
            if fragments > limits.max_object_fragments:
                return most
            for field_node in selected:
                key = (field_node.alias or field_node.name).value
                counts[key] = count = counts.get(key, 0) + 1
                if count > most.fields:
                    most.key, most.fields = key, count
                    if count > limits.max_merged_fields:
                        return most
                if field_node.selection_set is not None:
                    below.setdefault(key, []).append(field_node.selection_set)
            objects.extend(below.values())
        return most

    def _collect(self, selection_sets: list[SelectionSetNode]) -> tuple[list[FieldNode], int]:
        """The fields of one object (its selection sets, inline fragments and spreads inlined),
        and the number of fragments spread into it."""
        selected: list[FieldNode] = []
        seen: set[str] = set()
        stack = list(reversed(selection_sets))
        while stack:
            for selection in stack.pop().selections:
                if isinstance(selection, FieldNode):
                    selected.append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    stack.append(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    if name in self.fragments and name not in seen:
                        seen.add(name)
                        stack.append(self.fragments[name].selection_set)
        return selected, len(seen)


def _spreads(selection_set: SelectionSetNode) -> Iterator[FragmentSpreadNode]:
    """The spreads in a selection set, at any depth of it (not through fragments)."""
    stack = [selection_set]
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                yield selection
            elif selection.selection_set is not None:  # type: ignore[attr-defined]
                stack.append(selection.selection_set)  # type: ignore[attr-defined]


def check_shape(shape: Shape, limits: Limits, operation_name: str | None) -> GraphQLError | None:
    """The refusal of a document before validation, if any: the limits of the document bound
    the work of validation (which checks every operation and fragment), those of the operation
    run are the ones the README promises clients, and what merges into one object is looked at
    last, its walk being linear in the selections counted first."""
    if shape.invalid is not None:
        return shape.invalid
    return _document_refusal(shape, limits) or _operation_refusal(shape, limits, operation_name) or _merging_refusal(
        shape.merging(limits), limits
    )


def _document_refusal(shape: Shape, limits: Limits) -> GraphQLError | None:
    if len(shape.fragments) > limits.max_fragments:
        return too_complex(f"{len(shape.fragments):,} fragments exceed the maximum of {limits.max_fragments:,}")
    if shape.selections > limits.max_selections:
        return too_complex(
            f"The document makes {shape.selections:,} selections once its fragments are inlined, "
            f"more than the maximum of {limits.max_selections:,}"
        )
    if shape.most_directives > limits.max_directives_per_location:
        return too_complex(
            f"{shape.most_directives:,} directives on one node exceed the maximum of "
            f"{limits.max_directives_per_location}"
        )
    return None


def _operation_refusal(shape: Shape, limits: Limits, operation_name: str | None) -> GraphQLError | None:
    selected = shape.operation(operation_name)
    if selected is None:
        return None  # none, or none by that name: execution says so
    cost = shape.operation_costs[shape.operations.index(selected)]
    if cost.depth > limits.max_depth:
        return too_complex(f"Query depth {cost.depth} exceeds the maximum of {limits.max_depth}")
    if cost.aliases > limits.max_aliases:
        return too_complex(f"{cost.aliases:,} aliases exceed the maximum of {limits.max_aliases}")
    if cost.directives > limits.max_directives:
        return too_complex(
            f"{cost.directives:,} directives once fragments are inlined exceed the maximum of {limits.max_directives:,}"
        )
    return None


def _merging_refusal(merging: Merging, limits: Limits) -> GraphQLError | None:
    if merging.fragments > limits.max_object_fragments:
        return too_complex(
            f"{merging.fragments:,} fragments are spread into one object (directly or through other fragments), "
            f"more than the maximum of {limits.max_object_fragments}"
        )
    if merging.fields > limits.max_merged_fields:
        return too_complex(
            f"{merging.fields:,} fields answer the response key '{merging.key}' of one object, "
            f"more than the maximum of {limits.max_merged_fields}; select each field once"
        )
    return None


# ------------------------------------------------------------------ nodes, with the variables


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


def count_nodes(
    schema: GraphQLSchema, shape: Shape, operation: OperationDefinitionNode, variables: dict[str, Any]
) -> int:
    """The nodes `operation` could return (see the module's docstring) of a validated document.

    The count reads variables only where they size a page, so it is kept per operation and
    those variables' values (a client paging or opening node after node asks for it again)."""
    if shape._sizing is None:
        shape._sizing = _sizing_variables(shape)
    key = (id(operation), *((name, _size_key(variables.get(name))) for name in sorted(shape._sizing)))
    found = shape._counts.get(key)
    if found is None:
        found = _count_nodes(schema, shape, operation, variables)
        if len(shape._counts) < MAX_COUNTS_KEPT:
            shape._counts[key] = found
    return found


MAX_COUNTS_KEPT = 64


def _size_key(value: Any) -> Any:
    """What of a variable's value a count reads: an int, a list's length, or nothing."""
    if isinstance(value, list | tuple):
        return ("list", len(value))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _sizing_variables(shape: Shape) -> set[str]:
    """The variables given as a page size or an `ids` list anywhere in the document."""
    names: set[str] = set()
    definitions: list[Any] = [*shape.operations, *shape.fragments.values()]
    while definitions:
        node = definitions.pop()
        selection_set = getattr(node, "selection_set", None)
        if isinstance(node, FieldNode):
            for argument in node.arguments or ():
                if argument.name.value in (*PAGE_ARGUMENTS, "ids") and isinstance(argument.value, VariableNode):
                    names.add(argument.value.name.value)
        if selection_set is not None:
            definitions.extend(selection_set.selections)
    return names


def _count_nodes(
    schema: GraphQLSchema, shape: Shape, operation: OperationDefinitionNode, variables: dict[str, Any]
) -> int:
    per_fragment: dict[str, int] = {}

    def nodes(selection_set: SelectionSetNode | None, parent: Any) -> int:
        """At multiplier 1, the fragments spread here already counted."""
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value.startswith("__"):
                    continue
                definition = (getattr(parent, "fields", None) or {}).get(selection.name.value)
                child = get_named_type(definition.type) if definition else None
                is_connection = bool(child and child.name.endswith("Connection"))
                size = _page_size(selection, definition, variables, DEFAULT_PAGE_SIZE if is_connection else None)
                below = nodes(selection.selection_set, child)
                total += below if size is None else max(size, 1) * (1 + below)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                total += nodes(selection.selection_set, schema.get_type(condition.name.value) if condition else parent)
            elif isinstance(selection, FragmentSpreadNode):
                total += per_fragment.get(selection.name.value, 0)
        return total

    for name in shape.order:
        fragment = shape.fragments[name]
        per_fragment[name] = nodes(fragment.selection_set, schema.get_type(fragment.type_condition.name.value))
    return nodes(operation.selection_set, schema.get_root_type(operation.operation))
