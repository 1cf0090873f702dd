"""The phases of nlab: one small module per experiment phase, plus the shared core."""
