"""SPICE (Niu, Shan & Wang, TIP 2022): prototype pseudo-labeling heads (stage 2) and reliable
pseudo-labeling with FixMatch-style joint training (stage 3). Stage 1 reuses a contrastive pretrain plugin."""
