"""The shared core every phase uses, written once: run folders, seeding, devices, checkpoints, rendering,
statistics and the data registry. Nothing here imports torch at module level, so `nlab --help` stays fast."""
