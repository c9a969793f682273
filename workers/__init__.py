"""Celery tasks. Each task takes ids, re-fetches objects and calls a service."""
