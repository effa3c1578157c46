"""Harvest: votes become the next round's training data, and rounds become a lineage.

Public surface: the pure rules (HarvestRules, harvest, preference_pair; docs/harvest.md),
the Harvester service (browse and exclude voted battles, preview and build versioned round
datasets with manifests in DuckDB, export them as Hugging Face datasets), and lineage()
(which round trained which checkpoint, and how its rating moved).
"""

from qwen3arena.harvest.lineage import LineageEntry, lineage, lineage_frame
from qwen3arena.harvest.rules import (
    Harvest,
    HarvestRules,
    SourcedRow,
    VotedBattle,
    harvest,
    preference_pair,
    repair_conversation,
    repair_pairs,
)
from qwen3arena.harvest.service import (
    BattleFilters,
    BattleRow,
    Harvester,
    HarvestError,
    RoundExport,
    RoundPreview,
    RoundRecord,
    load_prompt_categories,
)

__all__ = [
    "BattleFilters", "BattleRow", "Harvest", "HarvestError", "HarvestRules", "Harvester", "LineageEntry",
    "RoundExport", "RoundPreview", "RoundRecord", "SourcedRow", "VotedBattle", "harvest", "lineage", "lineage_frame",
    "load_prompt_categories", "preference_pair", "repair_conversation", "repair_pairs",
]
