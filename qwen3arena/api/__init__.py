"""The application layer: the one seam between the faces (tabs, CLI, HTTP API) and the services.

`Actions` holds one method per thing a person can do, taking and returning dataclasses
(api.types) and raising `Refused` (qwen3arena.errors). `register_endpoints` exposes them as
`gr.api` endpoints; `RemoteActions` calls those endpoints and gives back the same values and
errors, so the CLI's `--app` mode and its local mode share every line but the transport.
"""

from qwen3arena.api.actions import PROMPT_SET, Actions, cuda_available
from qwen3arena.api.codec import plain, typed
from qwen3arena.api.remote import ENDPOINTS, RemoteActions, register_endpoints
from qwen3arena.api.types import (
    BattleExcluded, BoardView, CampaignDraft, CampaignRow, CheckpointView, ContestantHealth, DatasetText,
    DatasetUploaded, FilterChoices, ServingStatus, Exported, ReusedSettings, RoundBuilt, RoundPlan, RunPreview,
    RunStarted, RunStopped, RunView, ScoreboardExport,
)
from qwen3arena.checkpoints import Registered
from qwen3arena.errors import Refused
from qwen3arena.harvest import RoundExport

__all__ = [
    "ENDPOINTS", "PROMPT_SET", "Actions", "BattleExcluded", "BoardView", "CampaignDraft", "CampaignRow", "ContestantHealth", "DatasetText", "CheckpointView", "DatasetUploaded", "Exported", "FilterChoices", "Refused",
    "Registered", "RemoteActions", "ReusedSettings", "RoundBuilt", "RoundExport", "RoundPlan", "RunPreview",
    "RunStarted", "RunStopped", "RunView", "ScoreboardExport", "ServingStatus", "cuda_available", "plain",
    "register_endpoints", "typed",
]
