"""The generated worlds (synthetic, nus_like) and their write-once cache."""
