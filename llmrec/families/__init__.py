"""Families as objects: each trainable data view (impressions, interactions, sequences) prepares a job's
data, saves and loads its models' context and scores items for a user (``llmrec.families.base``)."""
from llmrec.families import impressions, interactions, sequences  # noqa: F401  (each registers its view)
from llmrec.families.base import VIEWS, Prepared, View, view_of
from llmrec.families.knowledge import KnowledgeFeatures, item_vector_matrix, knowledge_inputs, shuffled_table

__all__ = ["VIEWS", "KnowledgeFeatures", "Prepared", "View", "item_vector_matrix", "knowledge_inputs",
           "shuffled_table", "view_of"]
