"""Values derived from activities and the athlete's profile (training load, best efforts):
which version of their algorithms the stored ones reflect."""

from __future__ import annotations

# Bump when an algorithm behind a stored derived value changes (domain.training_load,
# domain.best_efforts): every athlete whose data reflects an older version is recomputed by
# the RECOMPUTE job that tasks.recompute schedules.
VERSION = 1
