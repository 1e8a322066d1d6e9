"""The offline, deterministic rules engine (medspaCy targets, ConText, sections)."""
