"""The --mix grammar of staged curricula, shared by ewc (base:modified batches per stage) and train-lora
(training data:extra data per stage): whole percentages per stage, each pair summing to 100, the first stage on
the base data alone."""

from __future__ import annotations

from phases.core.errors import InputError


def parse_mix(text: str) -> list[tuple[int, int]]:
    """'100:0,70:30,...' -> [(100, 0), (70, 30), ...]; each pair must sum to 100."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise InputError(f"--mix {text!r}: empty schedule", "give base:modified percentages per stage, "
                                                            "e.g. --mix 100:0,70:30,50:50,30:70")
    out = []
    for p in parts:
        try:
            a, b = (int(v) for v in p.split(":"))
        except ValueError:
            raise InputError(f"--mix {text!r}: {p!r} is not base:modified (two whole percentages)",
                             "e.g. --mix 100:0,70:30,50:50,30:70") from None
        if a < 0 or b < 0 or a + b != 100:
            raise InputError(f"--mix {text!r}: {p!r} does not sum to 100 (or is negative)",
                             "each stage's base:modified percentages must add up to 100")
        out.append((a, b))
    if out[0][1] != 0:
        raise InputError(f"--mix {text!r}: the first stage must be the base alone (100:0)",
                         "start the schedule with 100:0")
    if len(out) < 2:
        raise InputError(f"--mix {text!r}: a curriculum needs at least two stages", "e.g. --mix 100:0,50:50")
    return out
