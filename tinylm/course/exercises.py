"""Self-checking exercises for the notebooks. An exercise is a function the learner completes (its body raises
NotImplementedError until then) or, for an experiment, a number they measured (its test raises NotImplementedError
with a hint while the answer is None). `check(test)` runs the test: "not attempted yet" and the hint while the
placeholder is there, so that a notebook still runs top to bottom; "correct" when its asserts pass; a wrong answer's
failed assert goes through with its message.
"""

from __future__ import annotations

from typing import Callable


def check(test: Callable[[], None], name: str | None = None) -> None:
    label = name or test.__name__
    try:
        test()
    except NotImplementedError as placeholder:
        hint = str(placeholder) or "replace the `raise NotImplementedError` above"
        print(f"{label}: not attempted yet: {hint}, then run both cells again")
        return
    print(f"{label}: correct")
