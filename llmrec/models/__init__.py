"""Every recommender model, registered by name with its family and typed config (``llmrec models`` lists
them). Importing this package registers all built-in models; see ``llmrec.models.registry``."""
from llmrec.models.registry import (FAMILIES, MODELS, Family, ModelConfigBase, ModelEntry, build_model,
                                    describe_models, model_defaults, register_model, resolve_model_config)
from llmrec.models import ctr, diversify, graph, graphrag, multitask, push, rl, sequential, session  # noqa: F401,E402  (registers the built-in models)

__all__ = ["FAMILIES", "MODELS", "Family", "ModelConfigBase", "ModelEntry", "build_model", "describe_models",
           "model_defaults", "register_model", "resolve_model_config"]
