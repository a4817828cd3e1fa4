"""The session family (AHC-KNN, papers.md §31): anonymous-session recommenders fitted without a trainer
(``fit(sessions, starts, n_items)``, ``scores(session)``, ``recommend(session, k)``)."""
from llmrec.models.session import ahc_knn, sknn, vsknn  # noqa: F401  (registers the models)
