"""Development tools: the embedded Redis server that ``./run.sh`` and the tests start."""
