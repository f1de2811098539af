"""Look-ahead planning: a contact-list query whose whole selection the planner knows is answered
by one SQL statement (app.services.contact_plans) instead of field-by-field resolution.

Resolving 50 contacts with 10 relationships each field by field costs thousands of resolver
calls; the planned path builds the same JSON in PostgreSQL. It covers Query.contacts (all its
arguments), its edges/cursor/node/pageInfo/totalCount, Contact's plain fields and
relationships(direction, kinds, first) with Relationship's plain fields and source/target/other
as contacts, `__typename`, aliases and fragments. Anything else (another field, a directive, a
relationship page after a cursor, an edge ending at a record...) runs through the resolvers, which
also report every error: a plan that meets bad input steps aside rather than answer it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    OperationType,
    SelectionSetNode,
    get_operation_ast,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from strawberry.extensions import SchemaExtension
from strawberry.types.arguments import convert_arguments

from app.services import contact_plans as plans
from app.services.contact_plans import EdgesPlan, NotPlannable, Out, Shape
from app.services.errors import ServiceError
from schema.pagination import page_args

PAGE_INFO = ("hasNextPage", "hasPreviousPage", "startCursor", "endCursor")


class Planner(SchemaExtension):
    """Sets the operation's result before execution when the whole query can be planned."""

    async def on_execute(self) -> AsyncIterator[None]:
        ec = self.execution_context
        context = ec.context
        if context.services.settings.planner and ec.result is None:
            try:
                data = await _Plan(ec).run()
            except (NotPlannable, ServiceError, GraphQLError):
                data = None
            if data is not None:
                ec.result = ExecutionResult(data=data, errors=None)
        yield


class _Plan:
    def __init__(self, ec: Any) -> None:
        self.ec = ec
        self.schema = ec.schema
        self.gql = ec.schema._schema
        document = ec.graphql_document
        self.operation = get_operation_ast(document, ec.operation_name)
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        self._variables: VariableValues | None = None

    async def run(self) -> dict[str, Any] | None:
        op = self.operation
        if op is None or op.operation != OperationType.QUERY:
            return None
        root = self.fields(op.selection_set, "Query")
        data: dict[str, Any] = {}
        contacts = [(key, f) for key, f in root if f.name.value == "contacts"]
        if len(contacts) != 1 or any(f.name.value not in ("contacts", "__typename") for _, f in root):
            return None
        key, field = contacts[0]
        kwargs = self.arguments("Query", field)
        shape = self.connection(field, "Contact", self.contact)
        order = [(o.field.value, o.direction.value == "DESC") for o in kwargs.get("order_by") or []]
        args = page_args(kwargs.get("first"), kwargs.get("after"), kwargs.get("last"), kwargs.get("before"))
        context = self.ec.context
        async with context.db() as s:
            found = await plans.contact_list(s, context.principal, args, shape, where=kwargs.get("filter"),
                                             order=order, search=kwargs.get("search"))
        if found is None:
            return None
        for k, f in root:
            data[k] = found if f is field else "Query"
        return data

    # ------------------------------------------------------------ the selection

    def fields(self, selection_set: SelectionSetNode | None, runtime: str) -> list[tuple[str, FieldNode]]:
        """The fields selected on an object of type `runtime`, fragments applied, by response key."""
        if selection_set is None:
            raise NotPlannable("a selection is missing")
        out: dict[str, FieldNode] = {}
        interfaces = {i.name for i in self.gql.get_type(runtime).interfaces}

        def walk(ss: SelectionSetNode) -> None:
            for sel in ss.selections:
                if sel.directives:
                    raise NotPlannable("directives")
                if isinstance(sel, FieldNode):
                    key = (sel.alias or sel.name).value
                    if key in out:
                        raise NotPlannable("a field selected twice")
                    out[key] = sel
                    continue
                if isinstance(sel, FragmentSpreadNode):
                    fragment = self.fragments[sel.name.value]
                    if fragment.directives:
                        raise NotPlannable("directives")
                    condition, inner = fragment.type_condition, fragment.selection_set
                else:
                    condition, inner = sel.type_condition, sel.selection_set
                name = condition.name.value if condition else runtime
                if name == runtime or name in interfaces:
                    walk(inner)
                elif not isinstance(self.gql.get_type(name), GraphQLObjectType):
                    raise NotPlannable(f"a fragment on {name}")

        walk(selection_set)
        return list(out.items())

    @staticmethod
    def plain(field: FieldNode) -> None:
        if field.arguments or field.selection_set is not None:
            raise NotPlannable(field.name.value)

    def arguments(self, type_name: str, field: FieldNode) -> dict[str, Any]:
        """The field's arguments as its resolver receives them (input objects, enums...)."""
        definition = self.gql.get_type(type_name).fields[field.name.value]
        if self._variables is None:
            found = get_variable_values(self.gql, self.operation.variable_definitions or (), self.ec.variables or {})
            if not isinstance(found, VariableValues):
                raise NotPlannable("bad variables")
            self._variables = found
        raw = get_argument_values(definition, field, self._variables)
        strawberry_field = definition.extensions["strawberry-definition"]
        return convert_arguments(raw, strawberry_field.arguments, scalar_registry=self.schema.schema_converter.scalar_registry,
                                 config=self.schema.config)

    def connection(self, field: FieldNode, node_type: str, node: Any) -> Shape:
        shape = []
        for key, f in self.fields(field.selection_set, f"{node_type}Connection"):
            name = f.name.value
            if name == "edges":
                shape.append(Out(key, "edges", self.edge(f, node_type, node)))
            elif name == "pageInfo":
                shape.append(Out(key, "pageInfo", self.object(f, "PageInfo", PAGE_INFO)))
            elif name == "totalCount":
                self.plain(f)
                shape.append(Out(key, "totalCount"))
            else:
                shape.append(self.typename(key, f, f"{node_type}Connection"))
        return tuple(shape)

    def edge(self, field: FieldNode, node_type: str, node: Any) -> Shape:
        shape = []
        for key, f in self.fields(field.selection_set, f"{node_type}Edge"):
            if f.name.value == "node":
                shape.append(Out(key, "node", node(f)))
            elif f.name.value == "cursor":
                self.plain(f)
                shape.append(Out(key, "cursor"))
            else:
                shape.append(self.typename(key, f, f"{node_type}Edge"))
        return tuple(shape)

    def object(self, field: FieldNode, type_name: str, names: Any) -> Shape:
        """An object of plain fields `names` (and __typename)."""
        shape = []
        for key, f in self.fields(field.selection_set, type_name):
            if f.name.value in names:
                self.plain(f)
                shape.append(Out(key, f.name.value))
            else:
                shape.append(self.typename(key, f, type_name))
        return tuple(shape)

    @staticmethod
    def typename(key: str, field: FieldNode, type_name: str) -> Out:
        if field.name.value != "__typename":
            raise NotPlannable(field.name.value)
        return Out(key, "=", type_name)

    def contact(self, field: FieldNode) -> Shape:
        shape = []
        for key, f in self.fields(field.selection_set, "Contact"):
            if f.name.value == "relationships":
                kwargs = self.arguments("Contact", f)
                if kwargs.get("after") is not None:
                    raise NotPlannable("a later page of relationships")
                direction = kwargs.get("direction")
                kinds = kwargs.get("kinds")
                shape.append(Out(key, "relationships", EdgesPlan(
                    direction.value if direction else "BOTH", tuple(kinds) if kinds else None, kwargs.get("first"),
                    self.connection(f, "Relationship", self.relationship),
                )))
            elif f.name.value in plans.CONTACT_FIELDS:
                self.plain(f)
                shape.append(Out(key, f.name.value))
            else:
                shape.append(self.typename(key, f, "Contact"))
        return tuple(shape)

    def relationship(self, field: FieldNode) -> Shape:
        shape = []
        for key, f in self.fields(field.selection_set, "Relationship"):
            if f.name.value in plans.ENDS:
                shape.append(Out(key, f.name.value, self.object(f, "Contact", plans.CONTACT_FIELDS)))
            elif f.name.value in plans.RELATIONSHIP_FIELDS:
                self.plain(f)
                shape.append(Out(key, f.name.value))
            else:
                shape.append(self.typename(key, f, "Relationship"))
        return tuple(shape)
