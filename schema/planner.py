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

from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
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
from sqlalchemy.engine import Dialect
from strawberry.extensions import SchemaExtension
from strawberry.types.arguments import convert_arguments

from app.db.engine import Database
from app.services import contact_plans as plans
from app.services import contacts
from app.services.access import Principal
from app.services.contact_plans import PAGE_INFO, EdgesPlan, NotPlannable, Out, Prepared, Shape
from app.services.errors import ServiceError
from schema.context import Services
from schema.limits import Limits
from schema.pagination import page_args

PLANS_CACHED = 512


@dataclass(frozen=True)
class _Answer:
    """What an operation's plan is, whoever asks: the statement, and the root's response keys
    (True for the contacts field, False for a __typename)."""

    plan: Prepared
    root: tuple[tuple[str, bool], ...]


_plans: OrderedDict[tuple[Any, ...], _Answer | None] = OrderedDict()


class Planner(SchemaExtension):
    """Sets the operation's result before execution when the whole query can be planned.

    The plan of a document and its variables is the same for every caller (the workspace is bound
    per execution), and so is a refusal (bad input is the document's): both are kept, most
    recently used first, so a repeated query is neither walked nor built again."""

    async def on_execute(self) -> AsyncIterator[None]:
        ec = self.execution_context
        context = ec.context
        if context.services.settings.planner and ec.result is None:
            data = await self._answer(ec)
            if data is not None:
                ec.result = ExecutionResult(data=data, errors=None)
        yield

    @staticmethod
    async def _answer(ec: Any) -> dict[str, Any] | None:
        context = ec.context
        try:
            context.principal.require(contacts.READ)
        except ServiceError:
            return None  # the resolvers say why; a plan is neither built nor shared for such a caller
        key = _key(context.services.settings, ec.query, ec._provided_operation_name, ec.variables)  # as the request named it
        if key is not None and key in _plans:
            _plans.move_to_end(key)
            answer = _plans[key]
        else:
            try:
                answer = _Plan(ec).prepare(context.services.db.engine.dialect)
            except (NotPlannable, ServiceError, GraphQLError):
                answer = None
            if key is not None:
                _plans[key] = answer
                if len(_plans) > PLANS_CACHED:
                    _plans.popitem(last=False)
        return await _run(context.services.db, context.principal, answer)


async def cached_answer(
    services: Services, principal: Principal, query: Any, operation_name: Any, variables: Any
) -> dict[str, Any] | None:
    """The data of a request whose plan is cached, else None (the request must go the long way).

    A cached plan exists only for a document that was parsed, validated and measured against the
    limits with these very variables (the planner runs after all of that), so a request that
    repeats it needs none of it again: what is left is the caller's scope and the statement."""
    key = _key(services.settings, query, operation_name, variables)
    answer = _plans.get(key) if key is not None else None
    if answer is None:
        return None
    _plans.move_to_end(key)
    return await _run(services.db, principal, answer)


async def _run(db: Database, principal: Principal, answer: _Answer | None) -> dict[str, Any] | None:
    if answer is None:
        return None
    try:
        principal.require(contacts.READ)  # the caller's to pass before a plan is shared with them
        found = await plans.contact_list(db, principal, answer.plan)
    except (NotPlannable, ServiceError, GraphQLError):
        return None
    if found is None:
        return None
    return {key: found if is_contacts else "Query" for key, is_contacts in answer.root}


def _key(settings: Any, query: Any, operation_name: Any, variables: Any) -> tuple[Any, ...] | None:
    """The document, operation and variables, and the settings validation depends on (apps of
    other limits in one process keep apart); None when they are not what a plan is kept for (a
    parsed document, uploads in the variables)."""
    if not isinstance(query, str) or not (operation_name is None or isinstance(operation_name, str)):
        return None
    try:
        variables_json = orjson.dumps(variables, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return None
    return query, operation_name, variables_json, settings.introspection, Limits.of(settings)


class _Plan:
    def __init__(self, ec: Any) -> None:
        self.ec = ec
        self.schema = ec.schema
        self.gql = ec.schema._schema
        document = ec.graphql_document
        self.operation = get_operation_ast(document, ec.operation_name)
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        self._variables: VariableValues | None = None

    def prepare(self, dialect: Dialect) -> _Answer | None:
        op = self.operation
        if op is None or op.operation != OperationType.QUERY:
            return None
        root = self.fields(op.selection_set, "Query")
        contacts = [(key, f) for key, f in root if f.name.value == "contacts"]
        if len(contacts) != 1 or any(f.name.value not in ("contacts", "__typename") for _, f in root):
            return None
        _, field = contacts[0]
        kwargs = self.arguments("Query", field)
        shape = self.connection(field, "Contact", self.contact)
        order = [(o.field.value, o.direction.value == "DESC") for o in kwargs.get("order_by") or []]
        args = page_args(kwargs.get("first"), kwargs.get("after"), kwargs.get("last"), kwargs.get("before"))
        plan = plans.prepare(dialect, self.ec.context.principal, args, shape, where=kwargs.get("filter"),
                             order=order, search=kwargs.get("search"))
        return _Answer(plan, tuple((k, f is field) for k, f in root))

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
