"""Prometheus: the collector that reads the queue's figures from Redis at scrape time, and
the ``/metrics`` view."""
