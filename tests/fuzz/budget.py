"""Example budgets of the fuzz suite, raised by ``pytest --fuzz-long``.

``tests/fuzz/conftest.py`` sets :data:`LONG` before the test modules are
imported, so :func:`fuzz_settings` can be used in decorators.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

LONG = False
"""True under ``--fuzz-long``: every budget becomes at least :data:`LONG_EXAMPLES`."""
LONG_EXAMPLES = 100_000
ENV_VAR = "GOLDENHOUR_FUZZ_LONG"
PROFILE = "goldenhour-fuzz"
LONG_PROFILE = "goldenhour-fuzz-long"

settings.register_profile(
    PROFILE,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)
settings.register_profile(LONG_PROFILE, settings.get_profile(PROFILE))


def long_from_env() -> bool:
    """Whether ``GOLDENHOUR_FUZZ_LONG`` asks for the long budgets (for runs not naming tests/fuzz)."""
    return os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes")


def examples(normal: int) -> int:
    """The number of examples for a test whose normal budget is ``normal``."""
    return max(normal, LONG_EXAMPLES) if LONG else normal


def fuzz_settings(normal: int, **overrides: Any) -> settings:
    """Hypothesis settings for a fuzz test: the suite's profile and its budget."""
    parent = settings.get_profile(LONG_PROFILE if LONG else PROFILE)
    return settings(parent, max_examples=examples(normal), **overrides)
