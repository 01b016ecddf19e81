"""Scripts that try to break the queue's promises (faults, load, hostile input)."""
