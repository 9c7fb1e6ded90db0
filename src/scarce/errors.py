class UserError(Exception):
    """A user mistake: the CLI prints the one-line message and exits with code 2."""


def counted(n: int, noun: str) -> str:
    """``n noun`` with the plural ``s`` where it belongs (1 step, 2 steps) in the messages."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def duration_text(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``: a duration at the precision a person plans with."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
