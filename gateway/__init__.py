"""The tongban gateway: one aiohttp node per member city."""
