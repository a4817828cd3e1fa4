"""Every recommender model, registered by name with its family and typed config (``llmrec models`` lists
them). Importing this package registers all built-in models; see ``llmrec.models.registry``."""
from llmrec.models.registry import (FAMILIES, MODELS, Family, ModelConfigBase, ModelEntry, build_model,
                                    describe_models, model_defaults, register_model, resolve_model_config)
from llmrec.registry import import_all  # noqa: E402

LOADED = import_all(__name__)  # every family package (and so every model file) registers itself: a model is a new file

__all__ = ["FAMILIES", "MODELS", "Family", "ModelConfigBase", "ModelEntry", "build_model", "describe_models",
           "model_defaults", "register_model", "resolve_model_config"]
