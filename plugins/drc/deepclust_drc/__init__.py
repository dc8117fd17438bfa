"""DRC, "Deep Robust Clustering by Contrastive Learning" (Zhong et al., 2020), as toolkit plugins.

One-stage: the `drc` pretrain plugin trains backbone + K-way head end to end; head_init `from_pretrain`
hands that head to the engine, so the self-labeling stage may run 0 epochs or fine-tune.
"""
