"""Context Graph runtime: config, database, services, jobs, HTTP app and CLI."""
