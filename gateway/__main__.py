"""`python -m gateway` is the `callgate` command."""

from gateway.cli import app

# Guarded: the engine's child process (spawn) imports this module again.
if __name__ == "__main__":
    app()
