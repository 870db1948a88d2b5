"""Amendment 3's rule (docs/model-round2/preregistered.md), applied mechanically:
the Lite1 run C replaces the shipped recipe's run B when, on the images and boxed
findings both scored out of fold, the paired patient-bootstrap 95% interval of
C - B in mean AUC has its lower bound above 0 and C's pointing game is no more
than 5 points below B's. The rule's third condition, the edge budget, is measured
apart (``goldenhour train edge-cost``, ``goldenhour bench edge``).
``python -m training.round3_rule RUN_B RUN_C`` prints ``b`` or ``c`` on stdout and
the figures on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from training.round2_rule import Verdict, decide

POINTING_MARGIN = 0.05


def pick(run_b: Path, run_c: Path, *, rounds: int = 1000) -> tuple[str, Verdict]:
    """``c`` when C is shown better and localises about as well, else ``b``."""
    verdict = decide(run_b, run_c, rounds=rounds)
    better = verdict.difference_ci95[0] > 0
    points = verdict.pointing_pairs > 0 and verdict.pointing_b >= verdict.pointing_a - POINTING_MARGIN
    return ("c" if better and points else "b"), verdict


def main() -> None:
    choice, verdict = pick(Path(sys.argv[1]), Path(sys.argv[2]))
    print(json.dumps({**verdict.__dict__, "pick": choice}), file=sys.stderr)  # noqa: T201
    print(choice)  # noqa: T201


if __name__ == "__main__":
    main()
