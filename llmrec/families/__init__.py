"""Families as objects: each trainable data view (impressions, interactions, sequences) prepares a job's
data, saves and loads its models' context and scores items for a user (``llmrec.families.base``)."""
from llmrec.registry import import_all
from llmrec.families.base import VIEWS, Prepared, View, view_of
from llmrec.families.knowledge import KnowledgeFeatures, item_vector_matrix, knowledge_inputs, shuffled_table

VIEW_MODULES = import_all(__name__)  # every view module registers its view: a new view is a new file

__all__ = ["VIEWS", "KnowledgeFeatures", "Prepared", "View", "item_vector_matrix", "knowledge_inputs",
           "shuffled_table", "view_of"]
