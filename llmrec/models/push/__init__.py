"""The push family (PSP, papers.md §34): rankers of users for a campaign's seed items over the user-item
graph, fitted without a trainer (``fit(weights)``, ``score_users(seed_items)``)."""
from llmrec.registry import import_all

MODULES = import_all(__name__)  # every model file of the family registers itself
