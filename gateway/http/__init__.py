"""HTTP surface: thin handlers that call domain objects, errors rendered by one middleware."""
