"""GCC (generative calibration clustering) as a generation plugin: conditional DDPM + L_d, L_cwm, L_ml."""
