"""The session family (AHC-KNN, papers.md §31): anonymous-session recommenders fitted without a trainer
(``fit(sessions, starts, n_items)``, ``scores(session)``, ``recommend(session, k)``)."""
from llmrec.registry import import_all

MODULES = import_all(__name__)  # every model file of the family registers itself
