"""Serving: the managed vLLM server, the streaming chat client, and the contestant pool."""

from qwen3arena.serve.chat import ChatError, ChatResult, Delta, Endpoint, split_thinking, stream_chat
from qwen3arena.serve.contestants import Contestant, ContestantPool, endpoint_contestant
from qwen3arena.serve.vllm_server import AdapterError, ServerStatus, VLLMServer

__all__ = [
    "AdapterError", "ChatError", "ChatResult", "Contestant", "ContestantPool", "Delta",
    "Endpoint", "ServerStatus", "VLLMServer", "endpoint_contestant", "split_thinking",
    "stream_chat",
]
