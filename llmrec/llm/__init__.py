"""LLM backends behind one protocol (``LLM.generate``)."""
from llmrec.llm.base import LLM, Generation, GenerationParams, Message, Prompt
from llmrec.llm.registry import LLMConfig, make_llm

__all__ = ["LLM", "Generation", "GenerationParams", "Message", "Prompt", "LLMConfig", "make_llm"]
