"""Cases: statutory clocks counted in official working days (行政许可法 articles 32, 42, 45, 82)."""
