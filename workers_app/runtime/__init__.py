"""The worker runtime: a supervisor process, its slot processes and background loops.

Nothing here imports Django; ``runworker_tq`` wires it to the project settings.
"""
