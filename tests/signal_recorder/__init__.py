"""A test-only app: records Django's task signals, as received in a worker process."""
