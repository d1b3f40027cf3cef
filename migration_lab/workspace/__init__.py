"""The learner's work: their files (edits, revisions), chapter checkpoints and the reset, backups, progress."""
