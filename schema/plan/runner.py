"""Planned execution: the `Planner` extension answers a query from one compiled statement.

Plans are kept on the services object (`Plans`), keyed by the document and operation: a plan
holds the statements compiled for it, one per shape of its variables, where the variables that
only fill bound parameters (node ids, cursors: see `schema.plan.compiler`) are left out of the
shape. So a client paging through a list with `after: $cursor`, or opening contact after contact
with `node(id: $id)`, runs one prepared statement, compiled once. The extension runs after
parsing, validation and the limits, for every operation that reaches execution, so a cached plan
is reached the one way every other operation is.

A query the planner cannot answer (a field declared unplanned, a type not declared, bad input,
a node missing under a non-null field) is answered by the resolvers, which also report every
error; `ctxgraph_plan_fallbacks_total` counts those by reason.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    Visitor,
    get_operation_ast,
    visit,
)
from graphql.execution.collect_fields import FragmentDetails
from graphql.execution.values import VariableValues, get_variable_values
from prometheus_client import Counter
from sqlalchemy import and_, select
from sqlalchemy.engine import Dialect
from strawberry.extensions import SchemaExtension

from app import outages
from app.services.errors import ServiceError
from schema.plan.compiler import WORKSPACE, Compiled, Compiler, Slot
from schema.plan.encode import MISSING_TEXT, NotPlannable

log = logging.getLogger("ctxgraph.graphql")
FALLBACKS = Counter("ctxgraph_plan_fallbacks_total", "Queries answered by the resolvers, not planned, by reason", ["reason"])
PLANS_KEPT = 512
STATEMENTS_PER_PLAN = 64


@dataclass(frozen=True)
class Statement:
    """One compiled statement: its text, constant parameters, and where the workspace and the
    slots go (with the type's conversion of each)."""

    sql: str
    params: dict[str, Any]
    bound: tuple[tuple[str, Callable[[Any], Any] | None, Slot | None], ...]
    "(parameter, conversion, slot): a slot's value, or the workspace where the slot is None."
    keys: tuple[str, ...]
    scopes: frozenset[Any]
    unplanned: dict[str, str]
    order: tuple[str, ...]
    "Every root response key, in the document's order."
    rest: DocumentNode | None
    "The document of the `unplanned` root fields, for the resolvers."
    guarded: bool
    "Whether the row ends with the guards' verdict (see RootConnection.guard)."


@dataclass
class _Plan:
    """What is known of one document and operation."""

    bindable: frozenset[str] | None = None
    "Variables that only fill slots (known once a statement compiled)."
    shapers: dict[int, Callable[[VariableValues], Any]] = field(default_factory=dict)
    statements: OrderedDict[Any, Statement | str] = field(default_factory=OrderedDict)
    "By variable shape: the statement, or the reason none could be compiled."


class Plans:
    """The plans of this process, most recently used kept (PLANS_KEPT documents)."""

    def __init__(self) -> None:
        self._plans: OrderedDict[tuple[Any, ...], _Plan] = OrderedDict()
        self.compiled = 0
        "Statements compiled so far (a figure for tests and benchmarks)."

    def plan(self, key: tuple[Any, ...]) -> _Plan:
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = _Plan()
            if len(self._plans) > PLANS_KEPT:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return found


class Planner(SchemaExtension):
    """Sets the operation's result before execution when the planner can answer it; when it
    can answer some root fields, the resolvers answer only the others, and the two are merged
    in the document's order."""

    async def on_execute(self) -> AsyncIterator[None]:
        ec = self.execution_context
        found: Answer | None = None
        if ec.result is None and ec.context.services.settings.planner:
            try:
                found = await answer(ec)
            except NotPlannable as refusal:
                FALLBACKS.labels(str(refusal)).inc()
            except Exception as exc:  # the resolvers meet an outage too, and answer it as such
                if not outages.is_outage(exc):
                    log.exception("the planner failed; the resolvers answer [request %s]", ec.context.request_id)
                FALLBACKS.labels("the planner failed").inc()
        if found is None:
            yield
            return
        if found.rest is None:
            ec.result = ExecutionResult(data=found.data, errors=None)
            yield
            return
        for reason in found.reasons:
            FALLBACKS.labels(reason).inc()
        document, ec.graphql_document = ec.graphql_document, found.rest
        try:
            yield
        finally:
            ec.graphql_document = document
        data = getattr(ec.result, "data", None)
        if isinstance(data, dict):  # merged in place: that is the object the schema returns
            resolved = dict(data)
            data.clear()
            data.update({key: found.data[key] if key in found.data else resolved[key] for key in found.order})


@dataclass(frozen=True)
class Answer:
    """The planned root fields' data; with `rest`, the document of the root fields the resolvers
    answer (`reasons` why), and the response keys in order."""

    data: dict[str, Any]
    rest: DocumentNode | None = None
    reasons: tuple[str, ...] = ()
    order: tuple[str, ...] = ()


async def answer(ec: Any) -> Answer | None:
    """The operation's data from its plan; raises NotPlannable when the resolvers must answer."""
    context = ec.context
    services = context.services
    document = ec.graphql_document
    operation = get_operation_ast(document, ec.operation_name)
    if operation is None or operation.operation != OperationType.QUERY:
        return None
    if not isinstance(ec.query, str):
        raise NotPlannable("a document without its text")
    plan = services.plans.plan((ec.query, ec.operation_name))
    raw = ec.variables or {}
    coerced = get_variable_values(ec.schema._schema, operation.variable_definitions or (), raw)
    if not isinstance(coerced, VariableValues):
        raise NotPlannable("bad variables")
    key = _key(plan, raw, coerced)
    statement = plan.statements.get(key)
    if statement is None:
        key, statement = await _compile(ec, plan, operation, coerced, services.db.engine.dialect)
    else:
        plan.statements.move_to_end(key)
    if isinstance(statement, str):
        raise NotPlannable(statement)
    principal = context.principal
    try:
        for scope in statement.scopes:
            principal.require(scope) if isinstance(scope, str) else scope(principal)
    except ServiceError:
        raise NotPlannable("the caller's scopes") from None
    ws = principal.workspace_id
    try:
        params = dict(statement.params)
        for name, convert, slot in statement.bound:
            value = ws if slot is None else slot.bind(coerced)
            params[name] = value if convert is None else convert(value)
    except ServiceError:
        raise NotPlannable("bad input") from None
    data: dict[str, Any] = {}
    if statement.keys:
        (row,) = await services.db.read(ws, statement.sql, params)
        if statement.guarded:
            *row, holds = row
            if not holds:
                plan.statements.pop(key, None)
                raise NotPlannable("a plan gone stale (the rows it was compiled for changed)")
        for key, text in zip(statement.keys, row, strict=True):
            if text is not None and MISSING_TEXT in text:
                raise NotPlannable("a node missing under a non-null field")
            data[key] = None if text is None else orjson.Fragment(text)
    if not statement.unplanned:
        return Answer(data)
    return Answer(data, statement.rest, tuple(statement.unplanned.values()), statement.order)


def _rest(document: DocumentNode, operation: OperationDefinitionNode, unplanned: dict[str, str]) -> DocumentNode:
    """The document with only the root fields the resolvers answer (all the root's selections
    are fields: see `Compiler.compile`)."""
    fields = tuple(n for n in operation.selection_set.selections
                   if isinstance(n, FieldNode) and (n.alias or n.name).value in unplanned)
    narrowed = dataclasses.replace(operation, selection_set=SelectionSetNode(selections=fields))
    return dataclasses.replace(document, definitions=tuple(narrowed if d is operation else d for d in document.definitions))


async def _compile(ec: Any, plan: _Plan, operation: Any, coerced: VariableValues, dialect: Dialect
                   ) -> tuple[Any, Statement | str]:
    """Compiles the operation for these variables and keeps the outcome (and returns it) under
    their key."""
    document = ec.graphql_document
    fragments = {d.name.value: FragmentDetails(d) for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    raw = ec.variables or {}
    ec.context.services.plans.compiled += 1
    try:
        compiler = Compiler(ec.schema, operation, fragments, coerced, ec.context.principal)
        for key, root, arguments in compiler.loads():
            async with ec.context.db() as session:
                compiler.loaded[key] = await root.load(session, ec.context.principal, arguments)  # type: ignore[misc]
        compiled = compiler.compile()
        statement: Statement | str = _statement(compiled, dialect, document, operation)
        if plan.bindable is None:
            plan.bindable = _only_in_slots(document)
        plan.shapers.update(compiled.shapers)
    except NotPlannable as refusal:
        statement = str(refusal)
    except (ServiceError, GraphQLError):
        statement = "bad input"
    key = _key(plan, raw, coerced)
    plan.statements[key] = statement
    if len(plan.statements) > STATEMENTS_PER_PLAN:
        plan.statements.popitem(last=False)
    return key, statement


def _key(plan: _Plan, raw: dict[str, Any], coerced: VariableValues) -> Any:
    """Where a plan keeps what it compiled for these variables: under their shape once a
    statement compiled (see `_shape`), before that under the variables themselves (a refusal
    may owe to any value)."""
    return _shape(plan, raw, coerced) if plan.bindable is not None else ("unshaped", _json(raw))


def _statement(compiled: Compiled, dialect: Dialect, document: DocumentNode, operation: OperationDefinitionNode) -> Statement:
    columns = [expr.label(f"r{i}") for i, (_, expr) in enumerate(compiled.roots)]
    if compiled.guards:
        columns.append(and_(*compiled.guards).label("holds"))
    stmt = select(*columns)
    state = stmt.compile(dialect=dialect).construct_expanded_state()
    by_placeholder = {id(s.placeholder): s for s in compiled.slots}
    params, bound = {}, []
    for name, value in state.parameters.items():
        convert = state.processors.get(name)
        if value is WORKSPACE or value == WORKSPACE:
            bound.append((name, convert, None))
        elif id(value) in by_placeholder:
            bound.append((name, convert, by_placeholder[id(value)]))
        else:
            params[name] = value if convert is None else convert(value)
    found = {id(s) for _, _, s in bound if s is not None}
    if any(id(s) not in found for s in compiled.slots):
        raise NotPlannable("a slot the statement lost")
    keys = tuple(k for k, _ in compiled.roots)
    order = tuple(k for k in compiled.order)
    rest = _rest(document, operation, compiled.unplanned) if compiled.unplanned else None
    return Statement(state.statement, params, tuple(bound), keys, frozenset(compiled.scopes), compiled.unplanned, order, rest,
                     bool(compiled.guards))


def _shape(plan: _Plan, raw: dict[str, Any], coerced: VariableValues) -> Any:
    """The part of the variables a statement is compiled for (slots' values left out)."""
    assert plan.bindable is not None
    kept = {k: v if k not in plan.bindable else v is None for k, v in raw.items()}
    try:
        slot_shapes = tuple(shape(coerced) for shape in plan.shapers.values())
    except ServiceError:
        slot_shapes = ("bad input", _json(raw))
    return _json(kept), slot_shapes


def _json(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        raise NotPlannable("variables that are not JSON (uploads)") from None


def _only_in_slots(document: Any) -> frozenset[str]:
    """The variables used nowhere but as the whole value of an argument the compiler binds (a
    connection's `after`/`before`, `node`'s `id`): their values are no part of a statement."""
    slots, elsewhere = set(), set()

    class Uses(Visitor):
        def enter_field(self, node: FieldNode, *_: Any) -> None:
            for argument in node.arguments or ():
                name = argument.name.value
                if isinstance(argument.value, VariableNode) and (
                        name in ("after", "before") or name == "id" and node.name.value == "node"):
                    slots.add(argument.value.name.value)
                else:
                    visit(argument, Everywhere())

        def enter_argument(self, *_: Any) -> Any:
            return self.SKIP

        def enter_variable_definition(self, *_: Any) -> Any:
            return self.SKIP

        def enter_variable(self, node: VariableNode, *_: Any) -> None:
            elsewhere.add(node.name.value)

    class Everywhere(Visitor):
        def enter_variable(self, node: VariableNode, *_: Any) -> None:
            elsewhere.add(node.name.value)

    visit(document, Uses())
    return frozenset(slots - elsewhere)
