"""The CTR family: one file per model (importing this package registers them all)."""
from llmrec.models.ctr import autoint, dcnv2, deepfm, dgenn, din, dnn, fgcnn, fm, lr, optinter, pnn  # noqa: F401
