"""MoCo-v2 contrastive pretraining (Chen et al., 2020) as a `toolkit.pretrain` plugin (CDC's pretext)."""
