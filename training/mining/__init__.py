"""From git history (and imported review datasets) to hunkwise records."""
