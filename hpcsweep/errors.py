"""What reaches the user: the one exception type that means "the user asked for something we cannot do", its
one-line messages (validation errors, YAML files that do not parse, files that cannot be written), and `Log`, where a stage writes progress lines.

The CLI prints its message as a single line and exits with status 2; anything
else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

Log = Callable[[str], None]  # where a stage writes its progress lines (`print` by default)


class UserError(Exception):
    """A mistake in the user's input (file, key, value): reported in one line."""


def closest(name: str, choices: list[str], n: int = 5) -> list[str]:
    """Names from `choices` that look like `name` (for "did you mean" hints)."""
    import difflib

    matches = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if len(matches) < n:
        lowered = name.lower()
        matches += [c for c in choices if lowered in c.lower() and c not in matches]
    return matches[:n]


def one_line(err: ValidationError, source: str, root: type[BaseModel], prefix: str = "") -> str:
    """The first pydantic error as `file: key: problem; valid choices: ...`."""
    errors = err.errors()
    first = errors[0]
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc)
    if first["type"] == "extra_forbidden":
        valid = sorted(_model_at(root, loc[:-1]).model_fields)
        hint = closest(loc[-1], valid)
        message = (
            f"unknown key {loc[-1]!r}"
            + (f" in {'.'.join(loc[:-1])}" if len(loc) > 1 else "")
            + (f" (did you mean {', '.join(hint)}?)" if hint else "")
            + f"; valid keys: {', '.join(valid)}"
        )
    else:
        text = first["msg"].removeprefix("Value error, ")
        message = f"{prefix}{key}: {text}" if key else text
        if "input" in first and first["type"] not in ("missing",) and not isinstance(first["input"], dict):
            message += f" (got {first['input']!r})"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{source}: {message}{more}"


def read_yaml(path: Path) -> Any:
    """A YAML file the user wrote (a sweep, a variable set, a site), parsed; a syntax error is one line naming its place."""
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where}: not valid YAML ({getattr(err, 'problem', err)})") from None


def _model_at(root: type[BaseModel], loc: list[str]) -> type[BaseModel]:
    """The model class a location points into (through nested models and lists/tuples of models)."""
    from typing import get_args

    from pydantic import BaseModel

    model = root
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:
            continue  # a list index
        candidates = [field.annotation, *get_args(field.annotation)]
        candidates += [inner for c in list(candidates) for inner in get_args(c)]
        nested = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nested is not None:
            model = nested
    return model


PATH_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EEXIST)


def path_fault(err: OSError, output: bool = False) -> str:
    """One line for a file that cannot be written or made (full disk, read-only or unwritable folder, a file in the way),
    naming it; what to choose instead is `-o` for a command that writes one `output` file, else `--results`."""
    where = f"{err.filename}: " if err.filename else ""
    elsewhere, kept = ("write -o elsewhere", "nothing was written") if output else ("choose another --results", "finished trials are kept")
    hints: dict[int | None, str] = {
        errno.ENOSPC: f"free some space (or {elsewhere}) and run again: {kept}",
        errno.EDQUOT: f"the disk quota is used up; free some space and run again: {kept}",
        errno.EROFS: elsewhere,
        errno.EACCES: f"check its permissions, or {elsewhere}",
        errno.EPERM: f"check its permissions, or {elsewhere}",
    }
    hint = hints.get(err.errno, f"a file stands where a folder is needed (or the reverse); {elsewhere}, or move it away")
    return f"{where}{err.strerror or err}; {hint}"
