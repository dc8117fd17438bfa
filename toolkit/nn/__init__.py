"""Neural building blocks: feature backbones and cluster heads, chosen by name from recipes."""
