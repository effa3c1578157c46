"""The blind arena: pair sampling, battles streamed on both sides, one vote per battle."""

from qwen3arena.arena.leaks import find_identity_leak
from qwen3arena.arena.panes import render_pane
from qwen3arena.arena.sampling import model_weights, sample_pair
from qwen3arena.arena.service import (
    Arena, ArenaError, Ballot, BattleClosed, NoBattle, NotYourVote, Repaired, RepairRejected, Reveal, StillAnswering,
    TurnView, UndoRejected, Undone, VoteFinal, voter_id,
)

__all__ = [
    "Arena", "ArenaError", "Ballot", "BattleClosed", "NoBattle", "NotYourVote", "Repaired", "RepairRejected", "Reveal",
    "StillAnswering", "TurnView", "UndoRejected", "Undone", "VoteFinal", "find_identity_leak", "model_weights",
    "render_pane", "sample_pair", "voter_id",
]
