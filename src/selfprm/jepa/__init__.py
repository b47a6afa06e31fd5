"""UI-JEPA at toy scale: intent from unlabeled UI streams by temporal masked prediction.

Fu et al., "UI-JEPA: Towards Active Perception of User Intent through Onscreen
User Activity", arXiv 2409.04081.  Modules:

* ``ui_canvas`` / ``ui_streams``: synthetic screen recordings with latent intents;
* ``iit_loader``: the public IIT/IIW release layout (videos + annotations.csv);
* ``masking``: temporal block masks of whole frames;
* ``model``: frame/patch encoder over time, predictor, EMA target, latent loss;
* ``pretrain``: JEPA and pixel-MAE pretraining loops;
* ``intent``: probe heads and text decoder on frozen embeddings;
* ``supervised``: the from-scratch baseline;
* ``study`` / ``report`` / ``cli``: the label-efficiency comparison.
"""
