"""Schema extensions: the operation's lifecycle, query limits, and the error policy."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from graphql import (
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    ValidationRule,
    validate,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension

from app.services.errors import RateLimited, ServiceError
from schema.limits import measure

log = logging.getLogger("ctxgraph.graphql")
TOO_COMPLEX = "QUERY_TOO_COMPLEX"


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


@functools.lru_cache(maxsize=512)
def _validate(schema: Any, document: Any, rules: tuple[type[ValidationRule], ...]) -> list[GraphQLError]:
    return validate(schema, document, rules)


def _too_complex(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": TOO_COMPLEX})


class QueryLimits(SchemaExtension):
    """Validation, cached per document, then the depth, alias and node-count limits."""

    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        settings = ec.context.services.settings
        rules = tuple(ec.validation_rules)
        if not settings.introspection:
            rules = (*rules, NoSchemaIntrospectionCustomRule)
        errors = list(_validate(ec.schema._schema, ec.graphql_document, rules))
        if not errors:
            errors = self._limits(settings)
        ec.pre_execution_errors = errors
        yield

    def _limits(self, settings: Any) -> list[GraphQLError]:
        ec = self.execution_context
        document = ec.graphql_document
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        operation = next(
            (o for o in operations if ec.operation_name is None or (o.name and o.name.value == ec.operation_name)),
            None,
        )
        if operation is None:
            return []
        m = measure(ec.schema._schema, operation, fragments, ec.variables or {})
        if m.depth > settings.max_depth:
            return [_too_complex(f"Query depth {m.depth} exceeds the maximum of {settings.max_depth}")]
        if m.aliases > settings.max_aliases:
            return [_too_complex(f"{m.aliases} aliases exceed the maximum of {settings.max_aliases}")]
        if m.nodes > settings.max_nodes:
            return [_too_complex(
                f"The query could return {m.nodes} nodes, more than the maximum of {settings.max_nodes}; "
                "ask for smaller pages (first/last)"
            )]
        return []


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
            error.extensions = {**(error.extensions or {}), "code": self._request_error_code(error)}
            raise
        ec = self.execution_context
        result = ec.result
        if result is not None and getattr(result, "errors", None):
            result.errors = [self._classify(e) for e in result.errors]
        elif ec.pre_execution_errors:  # syntax or validation: no result object to rebuild
            for error in ec.pre_execution_errors:
                error.extensions = {**(error.extensions or {}), "code": self._request_error_code(error)}

    def on_stream_result(self, result: Any) -> Iterator[None]:
        """Each result a subscription streams gets the same treatment as a response."""
        if getattr(result, "errors", None):
            result.errors = [self._classify(e) for e in result.errors]
        yield

    @staticmethod
    def _request_error_code(error: GraphQLError) -> str:
        if error.extensions and "code" in error.extensions:
            return str(error.extensions["code"])
        too_many_tokens = "tokens" in error.message and "Parsing aborted" in error.message
        return TOO_COMPLEX if too_many_tokens else "BAD_USER_INPUT"

    def _classify(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        extensions = dict(error.extensions or {})
        if isinstance(original, ServiceError):
            extensions["code"] = original.code
            if isinstance(original, RateLimited):
                extensions["retryAfter"] = original.retry_after
        elif original is None or isinstance(original, GraphQLError) or error.path is None:
            extensions["code"] = self._request_error_code(error)
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
