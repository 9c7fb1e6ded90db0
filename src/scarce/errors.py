class UserError(Exception):
    """A user mistake: the CLI prints the one-line message and exits with code 2."""


def counted(n: int, noun: str) -> str:
    """``n noun`` with the plural ``s`` where it belongs (1 step, 2 steps) in the messages."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
