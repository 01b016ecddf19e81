"""Fault-injection scripts for docs/reliability.md (worker kills, rolling restarts, Redis)."""
