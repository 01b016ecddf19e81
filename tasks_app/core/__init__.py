"""The queue core: Redis scripts, key layout, task model and state machine.

Nothing in this package imports Django; the Django apps adapt it.
"""
