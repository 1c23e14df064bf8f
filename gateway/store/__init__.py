"""The store: SQLAlchemy 2 async over SQLite (WAL, default) or PostgreSQL."""
