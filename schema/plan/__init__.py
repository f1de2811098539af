"""The read path: GraphQL types declare how their fields come from SQL (`fields`), and the
planner compiles a whole query over those declarations into one statement (`compiler`) that
the `Planner` extension runs (`runner`)."""

from schema.plan.fields import (
    Children,
    Column,
    Computed,
    Embedded,
    Reference,
    Scope,
    Unplanned,
    declare,
    declare_root,
    declare_root_list,
)

__all__ = ["Children", "Column", "Computed", "Embedded", "Reference", "Scope", "Unplanned", "declare", "declare_root",
           "declare_root_list"]
