"""The graphrag family (Align-GRAG, papers.md §12): the subgraph of a textual knowledge graph an LLM answers
a question from: plain graph RAG (``graph_rag``) and graph RAG pruned by an aligner trained on LLM reasoning
(``align_grag``). Both have no trainer of the one loop (task ``fit``) and implement the ``Retriever``
protocol, so the research agent reads them as a public source."""
from llmrec.registry import import_all

MODULES = import_all(__name__)  # every model file of the family registers itself
