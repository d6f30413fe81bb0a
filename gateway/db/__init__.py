"""Persistence. SQL lives only in this package: tables in `schema`, queries in the repositories."""
