"""The diversify family (MDP-DIV, papers.md §33): rankers of a query's candidate documents for subtopic
coverage: MDP policies trained by REINFORCE (``llmrec.train.policy_gradient``) and the MMR baseline."""
from llmrec.models.diversify import mdp_div, mmr  # noqa: F401  (registers the models)
