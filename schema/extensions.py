"""Schema extensions: the operation's lifecycle, query limits, and the error policy."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from graphql import DocumentNode, GraphQLError, ValidationRule, parse, validate
from graphql.validation import NoSchemaIntrospectionCustomRule, OverlappingFieldsCanBeMergedRule, ValidationContext
from graphql.validation.validate import ValidationAbortedError
from strawberry.extensions import SchemaExtension

from app import outages
from app.services.errors import RateLimited, ServiceError
from schema.limits import TOO_COMPLEX, Limits, Shape, check_shape, check_source, count_nodes, too_complex

log = logging.getLogger("ctxgraph.graphql")
# Units of graphql-core's OverlappingFieldsCanBeMerged budget (two a pair of fields compared, two
# a pair of fragments): from 0.3 µs (fields) to 9 µs (fragments) each here, so at most ~180 ms
# where its own default, 500,000, allows seconds. Past it the document is QUERY_TOO_COMPLEX; those
# within the limits of `check_shape` seldom come near it (30 fragments of 5 fields spread
# together: 5,400).
OVERLAP_BUDGET = 20_000
# Validation errors reported at most (graphql-core's default is 100): each costs a scan of the
# text up to it (see schema.limits), and a client fixes the first few first.
VALIDATION_ERRORS = 10
# Documents longer than this are parsed and validated in a worker thread: one near the token
# limit costs 0.2-0.4 s to parse and 0.5-0.8 s to validate (pure Python, linear but slow), time
# the event loop owes every other request. The GIL is still shared, but switched every 5 ms.
OFF_LOOP_CHARS = 8_000

_parse = functools.lru_cache(maxsize=1024)(parse)


class OperationScope(SchemaExtension):
    """Gives each operation a context of its own (a WebSocket's operations share the
    connection's), and closes its session once the result is built, whatever happened."""

    async def on_operation(self) -> AsyncIterator[None]:
        context = self.execution_context.context = self.execution_context.context.for_operation()
        settings = context.services.settings
        self.execution_context.parse_options["max_tokens"] = settings.max_tokens
        try:
            yield
        finally:
            await context.close()

    async def on_parse(self) -> AsyncIterator[None]:
        ec = self.execution_context
        if isinstance(ec.query, str) and ec.graphql_document is None:
            ec.graphql_document = await parse_document(ec.query, ec.context.services.settings)
        yield


async def parse_document(query: str, settings: Any) -> DocumentNode:
    """The parsed document, cached per text. A text too long or of too many tokens is refused
    as a syntax error is (a GraphQLError), without the parse that would find it out; a long one
    is parsed off the event loop."""
    limits = Limits.of(settings)
    refusal = check_source(query, limits)
    if refusal is not None:
        raise refusal
    if len(query) > OFF_LOOP_CHARS:
        return await asyncio.to_thread(_parse, query, max_tokens=limits.max_tokens)
    return _parse(query, max_tokens=limits.max_tokens)


class _BudgetedOverlappingFields(OverlappingFieldsCanBeMergedRule):
    """graphql-core's rule with a budget fit for one request, for what `check_shape` cannot see
    (it does not know which fields conflict, only how many could)."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self.rule_context.remaining_complexity_budget = OVERLAP_BUDGET


class _ByText:
    """A parsed document as a cache key: equal when the texts are (hashing the text is cheap,
    hashing the tree walks all of it)."""

    __slots__ = ("document", "text")

    def __init__(self, text: str, document: Any) -> None:
        self.text, self.document = text, document

    def __hash__(self) -> int:
        return hash(self.text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByText) and other.text == self.text


@functools.lru_cache(maxsize=512)
def _checked(schema: Any, source: _ByText, operation_name: str | None, rules: tuple[type[ValidationRule], ...],
             limits: Limits) -> tuple[Shape, list[GraphQLError]]:
    """The document's shape and its refusal, else graphql-core's validation errors."""
    shape = Shape.of(source.document)
    refusal = check_shape(shape, limits, operation_name)
    if refusal is not None:
        return shape, [refusal]
    errors = validate(schema, source.document, rules, max_errors=VALIDATION_ERRORS)
    return shape, [_aborted() if _is_budget_abort(e) else e for e in errors]


def _is_budget_abort(error: GraphQLError) -> bool:
    """graphql-core aborts validation so when a rule's budget runs out or fragments nest too
    deeply for its recursion (an error limit reached says so in its message)."""
    return isinstance(error, ValidationAbortedError) and error.message == "Validation aborted."


def _aborted() -> GraphQLError:
    return too_complex(
        "The document is too costly to validate: too many fields that share a response key "
        "(through fragments too) to compare, or fragments nested too deeply"
    )


def _rules(rules: tuple[type[ValidationRule], ...], introspection: bool) -> tuple[type[ValidationRule], ...]:
    budgeted = tuple(_BudgetedOverlappingFields if r is OverlappingFieldsCanBeMergedRule else r for r in rules)
    return budgeted if introspection else (*budgeted, NoSchemaIntrospectionCustomRule)


class QueryLimits(SchemaExtension):
    """The limits of the document's shape, then graphql-core's validation (both cached per
    document text), then the node count with the request's variables.

    The shape comes first because some validation rules are super-linear, and in fragments
    exponential, in what `check_shape` bounds."""

    async def on_validate(self) -> AsyncIterator[None]:
        ec = self.execution_context
        settings = ec.context.services.settings
        limits = Limits.of(settings)
        rules = _rules(tuple(ec.validation_rules), settings.introspection)
        source = _ByText(ec.query, ec.graphql_document)  # the text OperationScope parsed
        check = (ec.schema._schema, source, ec.operation_name, rules, limits)
        if len(ec.query or "") > OFF_LOOP_CHARS:
            shape, errors = await asyncio.to_thread(_checked, *check)
        else:
            shape, errors = _checked(*check)
        if not errors:
            errors = self._node_limit(shape, limits)
        ec.pre_execution_errors = list(errors)
        yield

    def _node_limit(self, shape: Shape, limits: Limits) -> list[GraphQLError]:
        ec = self.execution_context
        operation = shape.operation(ec.operation_name)
        if operation is None:
            return []
        nodes = count_nodes(ec.schema._schema, shape, operation, ec.variables or {})
        if nodes > limits.max_nodes:
            return [too_complex(
                f"The query could return {nodes} nodes, more than the maximum of {limits.max_nodes}; "
                "ask for smaller pages (first/last)"
            )]
        return []


def request_error_code(error: GraphQLError) -> str:
    """The code of an error of the request itself (syntax, validation, variables, limits)."""
    if error.extensions and "code" in error.extensions:
        return str(error.extensions["code"])
    too_many_tokens = "tokens" in error.message and "Parsing aborted" in error.message
    return TOO_COMPLEX if too_many_tokens else "BAD_USER_INPUT"


class ErrorPolicy(SchemaExtension):
    """Gives every error its `extensions.code`, and masks the unexpected ones.

    Service errors and request errors (syntax, validation, variables, limits) keep their
    message; anything else becomes "Internal server error", logged with the request id, which
    the error carries too.
    """

    def on_operation(self) -> Iterator[None]:
        try:
            yield
        except GraphQLError as error:  # a syntax error propagates through the hook
            error.extensions = {**(error.extensions or {}), "code": request_error_code(error)}
            raise
        ec = self.execution_context
        result = ec.result
        if result is not None and getattr(result, "errors", None):
            result.errors = [self._classify(e) for e in result.errors]
        elif ec.pre_execution_errors:  # syntax or validation: no result object to rebuild
            for error in ec.pre_execution_errors:
                error.extensions = {**(error.extensions or {}), "code": request_error_code(error)}

    def on_stream_result(self, result: Any) -> Iterator[None]:
        """Each result a subscription streams gets the same treatment as a response."""
        if getattr(result, "errors", None):
            result.errors = [self._classify(e) for e in result.errors]
        yield

    def _unavailable(self, error: GraphQLError) -> GraphQLError:
        """PostgreSQL or Redis unreachable: the client's request may well succeed in a moment."""
        request_id = getattr(self.execution_context.context, "request_id", "")
        log.warning("service unavailable [request %s] at %s: %r", request_id, error.path, error.original_error)
        return GraphQLError(
            outages.MESSAGE, nodes=error.nodes, path=error.path,
            extensions={"code": outages.CODE, "retryAfter": outages.RETRY_AFTER_SECONDS, "requestId": request_id},
        )

    def _classify(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        extensions = dict(error.extensions or {})
        if isinstance(original, ServiceError):
            extensions["code"] = original.code
            if isinstance(original, RateLimited):
                extensions["retryAfter"] = original.retry_after
        elif outages.is_outage(original):
            return self._unavailable(error)
        elif original is None or isinstance(original, GraphQLError) or error.path is None:
            extensions["code"] = request_error_code(error)
        else:
            request_id = getattr(self.execution_context.context, "request_id", "")
            log.error("unexpected error [request %s] at %s", request_id, error.path, exc_info=original)
            return GraphQLError(
                "Internal server error", nodes=error.nodes, path=error.path,
                extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
            )
        return GraphQLError(
            error.message, nodes=error.nodes, source=error.source, positions=error.positions,
            path=error.path, original_error=original, extensions=extensions,
        )
