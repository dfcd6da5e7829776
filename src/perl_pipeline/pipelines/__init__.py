"""Kedro pipelines: thin, namespaced stages over the library."""
