"""Database: typed models, the engine, and tenant-scoped sessions."""
