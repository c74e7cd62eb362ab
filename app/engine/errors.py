"""The engine's two exceptions that cross layers: a message for the user, and a stop request.

A leaf module (stdlib only), so every part of the engine, the spec layer included, can raise them
without importing the job runner.
"""

from __future__ import annotations


class UserError(Exception):
    """An error whose message is meant for the user as it is (bad input, missing file...).

    ``jobs.run`` reports it without the exception class name; the traceback still goes to a Log event.
    """


class JobCancelled(Exception):
    """Raised by ``JobContext.check`` when the caller asked the job to stop."""


def disk_full_text(where: str = "") -> str:
    """The one wording of a full disk, for the job layer and for writers that check before writing."""
    return (f"the disk is full (no space left on device){where}. Free some space and run the job again; "
            "what was saved before this job is unchanged.")
