"""Single sign-on across members (PROTOCOL.md §6): home side, target side, logout."""
