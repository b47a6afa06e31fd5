"""UI-JEPA at toy scale: intent from unlabeled UI streams by temporal masked prediction.

Fu et al., "UI-JEPA: Towards Active Perception of User Intent through Onscreen
User Activity", arXiv 2409.04081.  Modules:

* ``ui_canvas`` / ``ui_streams``: synthetic screen recordings with latent intents;
* ``iit_loader``: the public IIT/IIW release layout (videos + annotations.csv);
* ``masking``: V-JEPA tube masks over space-time patch tokens (or whole frames);
* ``model``: patch-token video encoder, position-conditioned predictor, EMA target, latent loss;
* ``pretrain``: JEPA and pixel-MAE pretraining loops;
* ``intent``: attentive probe heads and tiny text decoder on frozen token embeddings;
* ``supervised``: the from-scratch baseline;
* ``study`` / ``report`` / ``cli``: the label-efficiency comparison.
"""
