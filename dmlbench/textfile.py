"""Reading a user's text file (YAML, CSV, label lists, index files) in one place.

Every such file is read as UTF-8; a file that cannot be read, or is in
another encoding, is one line naming it and the fix, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

from dmlbench.errors import UserError


def read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
            "save it as UTF-8"
        ) from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
