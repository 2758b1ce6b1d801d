"""The API root: the OpenAPI schema, its docs page, token login for scripts, and each app's API routes."""
