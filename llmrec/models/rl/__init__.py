"""The rl family (DRR, papers.md §32): recommenders trained as policies by an actor-critic loop
(``llmrec.train.actor_critic``) against a user simulator (``llmrec.data.simulator``); the model's context is
(user vectors, item vectors) from PMF."""
from llmrec.registry import import_all

MODULES = import_all(__name__)  # every model file of the family registers itself
