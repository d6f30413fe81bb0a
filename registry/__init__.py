"""The alliance registry: who is a member, with which keys, endpoint, status, roles and items.

Imports `trust` for signatures; never imports `gateway` or `adapters`.
"""
