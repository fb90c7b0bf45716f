"""Data: the canonical pair record's loaders, synthetic sets and mixing (see records.PreferencePair)."""
