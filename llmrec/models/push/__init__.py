"""The push family (PSP, papers.md §34): rankers of users for a campaign's seed items over the user-item
graph, fitted without a trainer (``fit(weights)``, ``score_users(seed_items)``)."""
from llmrec.models.push import activity, parw, ppr  # noqa: F401  (registers the models)
