"""The rl family (DRR, papers.md §32): recommenders trained as policies by an actor-critic loop
(``llmrec.train.actor_critic``) against a user simulator (``llmrec.data.simulator``); the model's context is
(user vectors, item vectors) from PMF."""
from llmrec.models.rl import drr  # noqa: F401  (registers the model)
