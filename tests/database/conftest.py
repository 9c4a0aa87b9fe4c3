"""The database tests run on real PostgreSQL (``pg``, ``postgres_url``) and SQLite.

Nothing is common to every module yet: each makes its apps with ``make_app``
(whose teardown disposes of their engines) or with a factory of its own.
"""
