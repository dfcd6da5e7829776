"""What an artefact was made from, and the comparison that refuses a stale one (no Kedro).

A *recipe* is a JSON-able mapping of everything that determines an artefact: settings and the
identities of the artefacts it was computed from. Its *fingerprint* is a short sha256 of the
recipe's canonical JSON, so two artefacts made the same way carry the same fingerprint and any
change of a setting or an input changes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FINGERPRINT_CHARS = 16


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace (tuples as lists), the form that is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_plain)


def fingerprint(recipe: Any) -> str:
    """The first 16 hex digits of the sha256 of the recipe's canonical JSON."""
    return hashlib.sha256(canonical_json(recipe).encode("utf-8")).hexdigest()[:FINGERPRINT_CHARS]


def differences(stored: Any, expected: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, stored value, expected value) for every leaf where the two recipes differ.

    A key present on one side only is reported with ``None`` on the other.
    """
    stored, expected = _plain_tree(stored), _plain_tree(expected)
    if isinstance(stored, Mapping) and isinstance(expected, Mapping):
        found = []
        for key in sorted(set(stored) | set(expected), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            found += differences(stored.get(key), expected.get(key), where)
        return found
    return [] if stored == expected else [(prefix or "(value)", stored, expected)]


class StaleArtefactError(ValueError):
    """An artefact was made from other settings or inputs than the ones this run uses."""

    def __init__(self, artefact: str, changes: list[tuple[str, Any, Any]], fix: str) -> None:
        self.artefact, self.changes, self.fix = artefact, changes, fix
        lines = [f"  {key}: {_show(old)} when it was made, {_show(new)} now" for key, old, new in changes[:8]]
        if len(changes) > 8:
            lines.append(f"  ... and {len(changes) - 8} more")
        super().__init__(
            f"{artefact} is stale: it was made from other settings or inputs than this run's:\n"
            + "\n".join(lines)
            + f"\nRebuild it: {fix}"
        )


def check_recipe(artefact: str, stored: Mapping | None, expected: Mapping, fix: str) -> None:
    """Raise :class:`StaleArtefactError` unless ``stored`` equals ``expected``."""
    changes = differences(stored or {}, expected)
    if changes:
        raise StaleArtefactError(artefact, changes, fix)


def write_text_atomic(path: Path, text: str, what: str = "file") -> None:
    """Write `text` to `path` all at once: a temporary file in the same folder, then ``os.replace``.

    A crash or a full disk leaves the previous file (or none), never a truncated one, and no
    temporary file behind.

    Raises:
        OSError: naming `what` and `path`, with the reason (e.g. no space left on the device).
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        Path(tmp).write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as error:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        reason = error.strerror or str(error)
        raise OSError(
            error.errno,
            f"cannot write the {what} {path}: {reason}; the previous {path.name} (if any) is unchanged. "
            "Free space or fix the folder's permissions, then run again",
        ) from error


def _show(value: Any) -> str:
    text = "absent" if value is None else canonical_json(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not part of a recipe")


def _plain_tree(value: Any) -> Any:
    """Tuples as lists, so a recipe read back from JSON compares equal to the one built in memory."""
    if isinstance(value, Mapping):
        return {str(k): _plain_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_tree(v) for v in value]
    return value
