"""The one exception type that means "the user asked for something we cannot do".

The CLI prints its message as a single line and exits with status 2; anything
else that escapes is a bug and keeps its traceback.
"""


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
