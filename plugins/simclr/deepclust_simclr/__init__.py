"""SimCLR contrastive pretraining (Chen et al., 2020) as a `toolkit.pretrain` plugin."""
