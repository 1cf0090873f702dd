"""The shared core every phase uses, each idea written once: run folders (runs.py), option rules (options.py),
the training loop's parts (training.py), paired comparison (compare.py), answers (answers.py), spike factors
(spikes.py), statistics, seeding, devices, checkpoints, rendering, the data registry (data/) and shared models
(models/).

Import cost: what the CLI loads to parse options and dispatch (options, errors, paths, jsonio, runs, render,
compare, answers, spikes, training, checkpoint) imports no torch, numpy or scipy at module level; the numeric
modules (charlm, seeding, stats, data/*, models/*) do, and are imported inside the phase functions that need
them, so `nlab --help` stays fast."""
