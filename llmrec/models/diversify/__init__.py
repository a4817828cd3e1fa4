"""The diversify family (MDP-DIV, papers.md §33): rankers of a query's candidate documents for subtopic
coverage: MDP policies trained by REINFORCE (``llmrec.train.policy_gradient``) and the MMR baseline."""
from llmrec.registry import import_all

MODULES = import_all(__name__)  # every model file of the family registers itself
