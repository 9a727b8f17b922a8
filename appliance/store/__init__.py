"""SQLite state (apsw, WAL): connection, numbered migrations, the journal, repositories."""
