"""Tools a careful team uses on a revision: the reviewer, the lock trace, migration tests, the revision graph."""
