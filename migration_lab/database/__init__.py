"""The lab database: where it runs (backends), how the kit reaches it (connections, locks, copies), its schema."""
