"""The names of what the models and their deployed forms output: one spelling for every
module that reads or writes them (training targets, inference results, exports)."""

#: Perception-branch logits `[B, K]`: the prediction.
PERCEPTION = "perception"
#: Attention-branch logits `[B, K]` (ST-ABN only; trained with the same labels).
ATTENTION = "attention"
#: Ms: one spatial attention map per frame (`[B, T, h, w, 1]` in Keras, `[B, T, h, w]` in
#: deployed models and inference results).
SPATIAL_ATTENTION = "spatial_attention"
#: Mt: one weight per frame `[B, T]`.
TEMPORAL_ATTENTION = "temporal_attention"
#: Deployed models: softmax of the perception logits `[B, K]`, and the logits themselves.
PROBABILITIES = "probabilities"
LOGITS = "logits"
