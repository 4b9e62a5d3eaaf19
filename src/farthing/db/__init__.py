"""Database adapter: engines, schema and migrations for SQLite and PostgreSQL."""
