"""Live events: the publisher, the per-process hub, the ``/ws`` consumer and its filters,
authentication and origin check."""
