"""An operation's selection compiled into one SQL statement that returns the response JSON.

The selection is collected as the executor collects it (graphql-core's `collect_fields`: named and
inline fragments, type conditions on interfaces and unions, @include/@skip, a field selected
twice merged), then each field is looked up in its type's declarations (schema.plan.fields) and
becomes a SQL expression: columns and expressions in the row's JSON object, references and
connections as correlated subqueries that build their own JSON. PostgreSQL writes the whole
response; Python never builds an object per row.

What a request may vary without a new statement: the workspace, node ids and cursors. Those are
bound parameters: the statement is compiled with a fresh placeholder object where each goes
(`Slot`), and each execution binds the request's values in their places. Everything else in the
variables (page sizes, filters, orders) decides the statement's text and is part of its key
(schema.plan.runner): a LIMIT stays a literal, which PostgreSQL plans well.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from graphql import (
    ArgumentNode,
    FieldNode,
    GraphQLEnumType,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    VariableNode,
    get_named_type,
    is_abstract_type,
)
from graphql.execution.collect_fields import FieldDetails, FragmentDetails, collect_fields, collect_subfields
from graphql.execution.values import VariableValues, get_argument_values
from sqlalchemy import Select, Text, case, func, literal_column, select, true
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from strawberry.types.arguments import convert_arguments

from app.services import ids
from app.services.access import Principal
from app.services.errors import BadInput
from app.services.pagination import PageArgs, SortKey, after_condition, decode_cursor, order_terms, page_flags, written
from schema.plan import encode
from schema.plan.encode import NotPlannable
from schema.plan.fields import (
    ROOTS,
    RootConnection,
    RootList,
    TYPES,
    Children,
    Column,
    Computed,
    Embedded,
    Reference,
    Scope,
    TypePlan,
    Unplanned,
)

WORKSPACE = uuid.uuid4()
"""Stands for the workspace in a compiled statement: a value of this process that no input can
name, so every bound parameter holding it is the workspace id, bound afresh per execution."""

Binder = Callable[[VariableValues], Any]


@dataclass(frozen=True)
class Slot:
    """A bound parameter whose value each request gives: `bind(variables)` reads it."""

    placeholder: Any
    bind: Binder


@dataclass
class Compiled:
    """What compiling an operation found: the SQL expressions of the root fields, what a caller
    must be allowed to read, the slots, and the variables that only fill slots."""

    roots: list[tuple[str, Any]]
    scopes: set[Any]
    "Scopes, or rules (see TypePlan.scope), a caller must pass to share the statement."
    slots: list[Slot]
    shapers: dict[int, Binder]
    """By argument: what the statement assumed of its value (a node id's type, which cursor
    values are null), so that a request for which that differs gets a statement of its own."""
    unplanned: dict[str, str]
    "Root fields (by response key) left to the resolvers, and why."
    guards: list[Any]
    "Conditions on the database the statement holds under (see RootConnection.guard)."
    order: list[str]
    "Every root response key, in order."


@dataclass
class _Walk:
    scopes: set[Any] = field(default_factory=set)
    slots: list[Slot] = field(default_factory=list)
    shapers: dict[int, Binder] = field(default_factory=dict)
    guards: list[Any] = field(default_factory=list)


def _placeholder(value: Any, n: int) -> Any:
    """A new object of `value`'s type, told apart from every other value by identity."""
    if isinstance(value, uuid.UUID):
        return uuid.uuid4()
    if isinstance(value, datetime):
        return datetime(1, 1, 1, tzinfo=value.tzinfo) + (value - value)
    if isinstance(value, bool) or value is None:
        raise NotPlannable("a cursor value of no bindable type")
    if isinstance(value, int):
        return int(f"{4611686018427387904 + n}")
    if isinstance(value, float):
        return float(f"{n}.5")
    if isinstance(value, str):
        return "".join(["\x00slot", str(n)])
    raise NotPlannable("a cursor value of no bindable type")


class Compiler:
    """Compiles one operation for one set of variable values (see the module docstring)."""

    def __init__(self, schema: Any, operation: OperationDefinitionNode, fragments: dict[str, FragmentDetails],
                 variables: VariableValues, principal: Principal) -> None:
        self.strawberry = schema
        self.gql: GraphQLSchema = schema._schema
        self.operation = operation
        self.fragments = fragments
        self.variables = variables
        self.scope = Scope(dataclasses.replace(principal, workspace_id=WORKSPACE))
        self.walk = _Walk()
        self.loaded: dict[str, Any] = {}
        "What the roots that `load` read, by response key."

    def loads(self) -> list[tuple[str, RootConnection, dict[str, Any]]]:
        """The root fields that read stored rows before they can be compiled (key, root, arguments)."""
        query = self.gql.query_type
        assert query is not None
        out = []
        for key, details in collect_fields(self.gql, self.fragments, self.variables, query, self.operation).grouped_field_set.items():
            definition = query.fields.get(details[0].node.name.value)
            root = ROOTS.get(_python_name(definition)) if definition is not None else None
            if isinstance(root, RootConnection) and root.load is not None:
                out.append((key, root, self.arguments(definition, details[0].node)))  # type: ignore[arg-type]
        return out

    # ------------------------------------------------------------------ entry

    def compile(self) -> Compiled:
        query = self.gql.query_type
        assert query is not None
        collected = collect_fields(self.gql, self.fragments, self.variables, query, self.operation)
        roots, unplanned = [], {}
        for key, details in collected.grouped_field_set.items():
            nodes = [d.node for d in details]
            walked = dataclasses.replace(self.walk, scopes=set(self.walk.scopes), slots=list(self.walk.slots),
                                         shapers=dict(self.walk.shapers), guards=list(self.walk.guards))
            try:
                roots.append((key, self.root_field(query, nodes, key)))
            except NotPlannable as refusal:
                self.walk = walked  # what the field's walk registered goes with it
                unplanned[key] = str(refusal)
        if unplanned and not any(isinstance(n, FieldNode) and n.name.value != "__typename" and (n.alias or n.name).value
                                 not in unplanned for n in self.operation.selection_set.selections):
            raise NotPlannable(next(iter(unplanned.values())))
        if unplanned and not all(isinstance(n, FieldNode) for n in self.operation.selection_set.selections):
            raise NotPlannable(next(iter(unplanned.values())))  # the resolvers' part would be a fragment's
        return Compiled(roots, self.walk.scopes, self.walk.slots, self.walk.shapers, unplanned, self.walk.guards,
                        list(collected.grouped_field_set))

    def root_field(self, query: GraphQLObjectType, nodes: list[FieldNode], key: str) -> Any:
        field_name = nodes[0].name.value
        if field_name == "__typename":
            return literal_column("'\"Query\"'", Text)
        definition = query.fields[field_name]
        python = _python_name(definition)
        if python == "node":
            return self.node_by_id(definition, nodes)
        root = ROOTS.get(python)
        if root is None:
            raise NotPlannable(f"Query.{field_name}")
        arguments = self.arguments(definition, nodes[0])
        if isinstance(root, RootList):
            return self.root_list(root, arguments, nodes)
        self.require(TYPES[root.type_name])
        if root.load is None:
            stmt, keys = root.rows(self.scope.principal, arguments)
        else:
            loaded = self.loaded[key]
            stmt, keys = root.rows(self.scope.principal, arguments, loaded)
            if root.guard is not None:
                self.walk.guards.append(root.guard(loaded, arguments, self.scope))
        connection = get_named_type(definition.type)
        return sql_cast(self.connection(connection, stmt, keys, nodes, arguments, self.scope), Text)

    def root_list(self, root: RootList, arguments: dict[str, Any], nodes: list[FieldNode]) -> Any:
        plan = TYPES[root.type_name]
        self.require(plan)
        stmt = root.rows(self.scope.principal, arguments)
        if stmt is None:
            return literal_column("'[]'", Text)
        rows = stmt.subquery()
        items = func.json_agg(aggregate_order_by(self.object(plan, rows, nodes, self.scope), rows.c.position))
        return sql_cast(select(func.coalesce(items, literal_column("'[]'::json"))).select_from(rows).scalar_subquery(), Text)

    def node_by_id(self, definition: GraphQLField, nodes: list[FieldNode]) -> Any:
        """node(id): the row of the type the id names, null when it is not there to see."""
        type_name, found = ids.decode(self.arguments(definition, nodes[0])["id"])
        plan = TYPES.get(type_name)
        if plan is None or plan.table is None:
            raise NotPlannable(f"node of a {type_name}" if type_name in self.gql.type_map else "node of an unknown type")
        self.require(plan)
        argument = _argument(nodes[0], "id")

        def read(variables: VariableValues) -> Any:
            return ids.decode(get_argument_values(definition, nodes[0], variables)["id"])

        slot = self.slot(found, argument, lambda v: read(v)[1], lambda v: read(v)[0])
        table = plan.table.alias()
        row = self.object(plan, table, nodes, self.scope)
        return sql_cast(select(row).select_from(table).where(table.c.id == slot, plan.visible(table, WORKSPACE))
                        .scalar_subquery(), Text)

    # ------------------------------------------------------------------ objects and fields

    def object(self, plan: TypePlan, row: Any, nodes: list[FieldNode], scope: Scope) -> Any:
        """The JSON object of `plan`'s type read from `row`, for the selection of `nodes`."""
        gtype = self.gql.get_type(plan.name)
        assert isinstance(gtype, GraphQLObjectType)
        scope = scope.within(row)
        return encode.json_object([(key, self.value(plan, gtype, row, fields, scope))
                                   for key, fields in self.subfields(gtype, nodes)])

    def value(self, plan: TypePlan, gtype: GraphQLObjectType, row: Any, nodes: list[FieldNode], scope: Scope) -> Any:
        field_name = nodes[0].name.value
        if field_name == "__typename":
            return encode.name(gtype.name)
        definition = gtype.fields[field_name]
        declared = plan.field(_python_name(definition))
        where = f"{gtype.name}.{field_name}"
        if declared is None:
            raise NotPlannable(where)
        if isinstance(declared, Unplanned):
            raise NotPlannable(f"{where}: {declared.reason}")
        if isinstance(declared, Column):
            column = row.c[declared.name]
            if field_name == "id" and declared.name == "id":
                return encode.global_id(plan.name, column)
            return self.scalar(definition.type, column, where)
        if isinstance(declared, Computed):
            return self.scalar(definition.type, declared.sql(row, scope), where)
        if isinstance(declared, Embedded):
            embedded_plan = TYPES[get_named_type(definition.type).name]
            joined = _correlated(declared.join(row, scope), scope).subquery()
            return _correlated(select(self.object(embedded_plan, joined, nodes, scope)).select_from(joined), scope).scalar_subquery()
        if isinstance(declared, Reference):
            return self.reference(declared, definition, row, nodes, scope)
        if isinstance(declared, Children):
            arguments = self.arguments(definition, nodes[0])
            owned = scope.under(plan.name, row.c.id)
            stmt, keys = declared.rows(row, owned, arguments)
            connection = get_named_type(definition.type)
            return self.connection(connection, stmt, keys, nodes, arguments, owned)
        raise NotPlannable(where)

    def scalar(self, gql_type: Any, expr: Any, where: str) -> Any:
        """A column or expression as the field's type writes it."""
        nullable = not isinstance(gql_type, GraphQLNonNull)
        inner = gql_type.of_type if not nullable else gql_type
        inner = inner.of_type if isinstance(inner, GraphQLNonNull) else inner
        if isinstance(inner, GraphQLList):
            element = get_named_type(inner)
            if element.name in ("DateTime", "Float") or isinstance(element, GraphQLEnumType):
                raise NotPlannable(f"{where}: a list of {element.name}")
            return expr
        named = inner.name
        if named == "DateTime":
            return encode.datetime(expr)
        if named == "Float":
            return case((expr.is_(None), None), else_=encode.float_(expr))
        if named == "ID":
            return sql_cast(expr, Text)
        return expr

    def reference(self, declared: Reference, definition: GraphQLField, row: Any, nodes: list[FieldNode], scope: Scope) -> Any:
        target = get_named_type(definition.type)
        if declared.type_name is not None:
            names = [declared.type_name]
        elif is_abstract_type(target):
            possible = {t.name for t in self.gql.get_possible_types(target)}  # type: ignore[arg-type]
            names = [t for t in declared.types() if t in possible]
        else:
            names = [target.name]
        id_ = declared.id(row, scope)
        branches = []
        for type_name in names:
            plan = TYPES[type_name]
            if plan.table is None:
                raise NotPlannable(f"a reference to {type_name}")
            self.require(plan)
            other = plan.table.alias()
            found = _correlated(select(self.object(plan, other, nodes, scope)).select_from(other)
                                .where(other.c.id == id_, plan.visible(other, WORKSPACE)), scope).scalar_subquery()
            branches.append((type_name, found))
        if declared.type_of is None:
            value = branches[0][1]
        else:
            kind = declared.type_of(row, scope)
            value = case(*((kind == encode.name(t), found) for t, found in branches), else_=None)
        return value if not isinstance(definition.type, GraphQLNonNull) else func.coalesce(value, encode.MISSING)

    # ------------------------------------------------------------------ connections

    def connection(self, connection: Any, stmt: Select[Any], keys: Sequence[SortKey], nodes: list[FieldNode],
                   arguments: dict[str, Any], scope: Scope) -> Any:
        """A Relay connection over `stmt`'s rows in `keys` order, as `paginate` pages it (a root
        list), or `ChildPages.first_pages` (a nested one: an empty page still reads one row, for
        hasNextPage)."""
        node_field = connection.fields["edges"].type
        node_type = get_named_type(get_named_type(node_field).fields["node"].type)
        plan = TYPES.get(node_type.name)
        if plan is None:
            raise NotPlannable(f"a connection of {node_type.name}")
        self.require(plan)
        args = PageArgs(first=arguments.get("first"), after=arguments.get("after"),
                        last=arguments.get("last"), before=arguments.get("before"))
        size = args.size
        base = stmt
        for name, reverse in (("after", False), ("before", True)):
            cursor = getattr(args, name)
            if cursor is not None:
                stmt = stmt.where(after_condition(keys, self.cursor_slots(nodes[0], name, cursor, len(keys)), reverse=reverse))
        window = (stmt.add_columns(*(k.expr.label(f"_k{i}") for i, k in enumerate(keys)))
                  .order_by(*order_terms(keys, args.backward)).limit(written(size + 1 if size or scope.enclosing else 0)))
        fetched = _correlated(window, scope).subquery()
        # Rows are numbered once fetched: a window function over the whole query would make
        # PostgreSQL sort every row instead of keeping the best few (a top-N sort).
        fetched_keys = [dataclasses.replace(k, expr=fetched.c[f"_k{i}"]) for i, k in enumerate(keys)]
        number = func.row_number().over(order_by=order_terms(fetched_keys, args.backward)).label("_rn")
        numbered = select(fetched, number).select_from(fetched)
        page = _correlated(numbered, scope).subquery()
        rn = page.c._rn
        in_page = rn <= written(size)
        position = rn.desc() if args.backward else rn
        cursor = encode.cursor([page.c[f"_k{i}"] for i in range(len(keys))])
        more = func.count() > written(size)
        has_next, has_previous = page_flags(0, args)
        flags = {"hasNextPage": more if not args.backward else _boolean(has_next),
                 "hasPreviousPage": more if args.backward else _boolean(has_previous)}
        gtype = connection
        pairs = []
        for key, fnodes in self.subfields(gtype, nodes):
            name = fnodes[0].name.value
            if name == "edges":
                edge = self.edge(get_named_type(node_field), plan, page, cursor, fnodes, scope)
                agg = func.json_agg(aggregate_order_by(edge, position)).filter(in_page)
                pairs.append((key, func.coalesce(agg, literal_column("'[]'::json"))))
            elif name == "pageInfo":
                pairs.append((key, self.page_info(fnodes, flags, cursor, position, in_page)))
            elif name == "totalCount":
                counted = _correlated(base.order_by(None), scope).subquery()
                pairs.append((key, _correlated(select(func.count()).select_from(counted), scope).scalar_subquery()))
            elif name == "__typename":
                pairs.append((key, encode.name(gtype.name)))
            else:
                raise NotPlannable(f"{gtype.name}.{name}")
        # HAVING makes it an aggregate query: one row, even when the selection aggregates nothing
        connection_row = select(encode.json_object(pairs)).select_from(page).having(true())
        return _correlated(connection_row, scope).scalar_subquery()

    def edge(self, gtype: GraphQLObjectType, plan: TypePlan, page: Any, cursor: Any, nodes: list[FieldNode], scope: Scope) -> Any:
        pairs = []
        for key, fnodes in self.subfields(gtype, nodes):
            name = fnodes[0].name.value
            if name == "node":
                pairs.append((key, self.object(plan, page, fnodes, scope)))
            elif name == "cursor":
                pairs.append((key, cursor))
            elif name == "__typename":
                pairs.append((key, encode.name(gtype.name)))
            else:
                raise NotPlannable(f"{gtype.name}.{name}")
        return encode.json_object(pairs)

    def page_info(self, nodes: list[FieldNode], flags: dict[str, Any], cursor: Any, position: Any, in_page: Any) -> Any:
        gtype = self.gql.get_type("PageInfo")
        assert isinstance(gtype, GraphQLObjectType)
        cursors = func.array_agg(aggregate_order_by(cursor, position), type_=ARRAY(Text)).filter(in_page)
        pairs = []
        for key, fnodes in self.subfields(gtype, nodes):
            name = fnodes[0].name.value
            if name in flags:
                pairs.append((key, flags[name]))
            elif name == "startCursor":
                pairs.append((key, cursors[1]))
            elif name == "endCursor":
                pairs.append((key, cursors[func.array_length(cursors, 1)]))
            elif name == "__typename":
                pairs.append((key, encode.name("PageInfo")))
            else:
                raise NotPlannable(f"PageInfo.{name}")
        return encode.json_object(pairs)

    def subfields(self, gtype: GraphQLObjectType, nodes: list[FieldNode]) -> list[tuple[str, list[FieldNode]]]:
        """The fields selected on `gtype` under `nodes`, by response key, as the executor collects them."""
        collected = collect_subfields(self.gql, self.fragments, self.variables, self.operation, gtype,
                                      [FieldDetails(n, None) for n in nodes])
        return [(key, [d.node for d in details]) for key, details in collected.grouped_field_set.items()]

    # ------------------------------------------------------------------ arguments, slots, scopes

    def arguments(self, definition: GraphQLField, node: FieldNode) -> dict[str, Any]:
        """The field's arguments as its resolver receives them (input objects, enums...)."""
        raw = get_argument_values(definition, node, self.variables)
        strawberry_field = definition.extensions["strawberry-definition"]
        return convert_arguments(raw, strawberry_field.arguments, scalar_registry=self.strawberry.schema_converter.scalar_registry,
                                 config=self.strawberry.config)

    def slot(self, value: Any, argument: ArgumentNode | None, bind: Binder, shape: Binder) -> Any:
        placeholder = _placeholder(value, len(self.walk.slots))
        self.walk.slots.append(Slot(placeholder, bind))
        if argument is not None:
            self.walk.shapers[id(argument)] = shape
        return placeholder

    def cursor_slots(self, node: FieldNode, name: str, cursor: str, width: int) -> list[Any]:
        """The decoded cursor as bound parameters (a null value is part of the statement)."""
        values = decode_cursor(cursor, width)
        argument = _argument(node, name)

        def read(variables: VariableValues) -> list[Any]:
            given = _argument_value(argument, variables) if argument is not None else cursor
            if not isinstance(given, str):
                raise BadInput("Invalid cursor")
            return decode_cursor(given, width)

        def shape(variables: VariableValues) -> Any:
            given = _argument_value(argument, variables) if argument is not None else cursor
            return None if given is None else tuple(type(v).__name__ for v in read(variables))

        out = []
        for i, v in enumerate(values):
            out.append(None if v is None else self.slot(v, argument, lambda variables, i=i: read(variables)[i], shape))
        return out

    def require(self, plan: TypePlan) -> None:
        if plan.scope is not None:
            self.walk.scopes.add(plan.scope)


def _correlated(stmt: Select[Any], scope: Scope) -> Select[Any]:
    """`stmt` as a subquery of the enclosing rows: their columns are references, not FROMs."""
    return stmt.correlate(*scope.enclosing) if scope.enclosing else stmt


def _python_name(definition: GraphQLField) -> str:
    return definition.extensions["strawberry-definition"].python_name


def _argument(node: FieldNode, name: str) -> ArgumentNode | None:
    return next((a for a in node.arguments or () if a.name.value == name), None)


def _argument_value(argument: ArgumentNode, variables: VariableValues) -> Any:
    value = argument.value
    if isinstance(value, VariableNode):
        return variables.coerced.get(value.name.value)
    return getattr(value, "value", None)


def _boolean(value: bool) -> Any:
    return literal_column("true" if value else "false")


