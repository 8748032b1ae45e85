"""--mode=study: one training per seed (and variant), resumable and shareable
between processes and machines, and the spread of their results."""
