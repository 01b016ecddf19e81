"""Django edge of the worker runtime: the runworker_tq command and worker views."""
