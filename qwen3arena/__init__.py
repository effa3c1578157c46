"""qwen3arena: train Qwen3 adapters, battle them blind, rate them, harvest the votes."""

__version__ = "0.1.0"
