"""Serving: the managed vLLM server (or its replicas), the streaming chat client with its
replica balancer, and the contestant pool."""

from qwen3arena.serve.chat import ChatError, ChatResult, Delta, Endpoint, split_thinking, stream_chat
from qwen3arena.serve.contestants import Contestant, ContestantPool, endpoint_contestant
from qwen3arena.serve.replicas import VLLMReplicas, managed_server
from qwen3arena.serve.vllm_server import AdapterError, ServerStatus, VLLMServer

__all__ = [
    "AdapterError", "ChatError", "ChatResult", "Contestant", "ContestantPool", "Delta",
    "Endpoint", "ServerStatus", "VLLMReplicas", "VLLMServer", "endpoint_contestant", "managed_server",
    "split_thinking", "stream_chat",
]
