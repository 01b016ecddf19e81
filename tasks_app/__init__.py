"""Django edge of the task queue: settings, broker connection and handler discovery."""
