"""Everything that touches cryptography: keys, JWKs, JWS signing and verification.

No other package imports `cryptography` or calls PyJWT's signing functions directly, so the
algorithm and `typ` policy of PROTOCOL.md §2 is enforced in exactly one place.
"""
