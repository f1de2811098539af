"""Typed SQLAlchemy models, one module per domain. The schema itself is built by the Alembic
revisions in migrations/, never by `create_all`.

Tables with a `workspace_id` are tenant tables: row-level security limits the app role to the
workspace set for the transaction (see `app.db.engine`).
"""

from app.db.models.base import Base
from app.db.models.documents import Document, DocumentChunk, DocumentLink, DocumentVersion  # noqa: F401
from app.db.models.contacts import ActivityEvent, Contact, ContactIntelligence, ContactThread, ConversationParticipant, Relationship
from app.db.models.identity import ApiKey, Member, RefreshToken, User, Workspace
from app.db.models.records import ObjectType, Record, RecordValue, RecordVersion  # noqa: F401
from app.db.models.jobs import Job, JobItem, JobPayloadChunk
from app.db.models.sources import Source

__all__ = [
    "ActivityEvent", "Contact", "ContactIntelligence", "ContactThread", "ConversationParticipant", "Relationship",
    "ApiKey", "Base", "Member", "RefreshToken", "Source", "User", "Workspace"]
