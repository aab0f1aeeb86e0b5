"""How the report names an exception a part caught: one line."""


def error_line(error: BaseException) -> str:
    """`Type: the first line of its message`."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
