"""Personalized Deep Research agent: private-then-public retrieval, adaptive stopping, cited reports, traces."""
from llmrec.research.agent import (PersonalizedResearcher, ResearchConfig, ResearchError, ResearchResult,
                                   save_trace)
from llmrec.research.sources import Evidence, GraphSource, LangChainSource, MemorySource, Source, StoreSource

__all__ = ["Evidence", "GraphSource", "LangChainSource", "MemorySource", "PersonalizedResearcher", "ResearchConfig",
           "ResearchError", "ResearchResult", "Source", "StoreSource", "save_trace"]
