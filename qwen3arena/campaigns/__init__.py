"""Labelling campaigns: prompt sets, atomic assignment, progress, inter-labeller agreement."""

from qwen3arena.ratings.agreement import AgreementReport, agreement, cohen_kappa, fleiss_kappa, percent_agreement
from qwen3arena.campaigns.prompts import (
    CampaignPrompt,
    PromptFileError,
    load_shipped,
    parse_prompt_jsonl,
    shipped_prompt_sets,
)
from qwen3arena.campaigns.service import (
    MAX_CRITERIA,
    VERDICTS,
    Assignment,
    Campaign,
    CampaignError,
    CampaignService,
    LabellerView,
    MyProgress,
    Progress,
    check_criteria,
    check_reviewers,
    check_verdicts,
)

__all__ = [
    "AgreementReport", "Assignment", "Campaign", "CampaignError", "CampaignPrompt", "CampaignService",
    "LabellerView", "MyProgress", "Progress", "PromptFileError", "agreement", "cohen_kappa", "fleiss_kappa",
    "load_shipped", "parse_prompt_jsonl", "percent_agreement", "shipped_prompt_sets",
    "MAX_CRITERIA", "VERDICTS", "check_criteria", "check_reviewers", "check_verdicts",
]
