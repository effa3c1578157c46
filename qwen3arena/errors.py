"""One error base for everything a person can be refused or told failed.

Every face (the tabs, `gr.api`, the CLI) catches `Refused` alone and shows its message: each
subclass promises that its message is safe to show (it names no model of an unvoted battle,
holds no key) and says what to do. `kind` is a stable, machine-readable name, so a remote caller
(the CLI through `--app`) can tell errors apart without reading their wording.
"""

from __future__ import annotations


class Refused(Exception):
    """An action was refused or failed; `str(error)` is safe to show, `kind` is stable."""

    @property
    def kind(self) -> str:
        return type(self).__name__
