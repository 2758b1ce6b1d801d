"""The project scientists' dashboard: watch the project and its learning loop, steer it, label the
expert queue, and export and import catalogues."""
