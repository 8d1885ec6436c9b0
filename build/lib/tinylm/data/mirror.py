"""The offline mirror: a local folder laid out like the downloads, named by $TINYLM_DATA_MIRROR.

Kept in its own module because both the downloader and the tokenizers consult it.
"""

from __future__ import annotations

import os
from pathlib import Path

MIRROR_ENV = "TINYLM_DATA_MIRROR"


def mirror_dir() -> Path | None:
    """The mirror folder if $TINYLM_DATA_MIRROR is set; an error if it names a missing folder."""
    value = os.environ.get(MIRROR_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{MIRROR_ENV}={value!r} is not a folder; "
                                "point it at the offline data mirror or unset it")
    return path
