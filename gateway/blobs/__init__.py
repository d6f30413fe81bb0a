"""Materials (PROTOCOL.md §5): content-addressed blobs on disk, their upload between gateways.

- `store`: the disk store, keyed by the base64url SHA-256 of the content.
- `materials`: what the case code calls when a clerk or the portal hands over a material.
- `receive`: the receiving side of `PUT /federation/v1/blobs/{sha256}` (request token checks).
- `send`: the sending side, used by the outbox before a message that lists `att` goes out.
"""
