"""The REST API's views: tasks, admin, auth tokens."""
