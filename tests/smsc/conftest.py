"""Makes the ``smsc`` fixture available to the simulator's own tests."""

from .fixture import smsc

__all__ = ["smsc"]
