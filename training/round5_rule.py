"""Amendment 5's rule (docs/model-round2/preregistered.md), applied mechanically:
D (blocks 8-15 trained) replaces B (1.2.1's recipe) when amendment 3's rule
picks it on all 5 folds and, on the folds that did not choose it (2, 3 and 4;
folds 0 and 1 did, in amendment 4), D - B in mean AUC is above 0.
``python -m training.round5_rule RUN_B RUN_D`` prints ``b`` or ``d`` on stdout
and the figures of both checks on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from training.round2_rule import Verdict, decide
from training.round3_rule import pick as pick_round3

UNSEEN_FOLDS = frozenset({2, 3, 4})
"""The folds amendment 4 had not looked at when D was chosen."""


def pick(run_b: Path, run_d: Path, *, rounds: int = 1000) -> tuple[str, Verdict, Verdict]:
    """``d`` when D passes on all folds and holds on the unseen ones, else ``b``."""
    choice, every = pick_round3(run_b, run_d, rounds=rounds)
    unseen = decide(run_b, run_d, rounds=0, folds=UNSEEN_FOLDS)  # the check is a point estimate
    holds = unseen.images > 0 and unseen.auc_b > unseen.auc_a
    return ("d" if choice == "c" and holds else "b"), every, unseen


def main() -> None:
    choice, every, unseen = pick(Path(sys.argv[1]), Path(sys.argv[2]))
    print(json.dumps({"all_folds": every.__dict__, "folds_2_3_4": unseen.__dict__, "pick": choice}),  # noqa: T201
          file=sys.stderr)
    print(choice)  # noqa: T201


if __name__ == "__main__":
    main()
