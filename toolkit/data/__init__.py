"""Data sets (in-memory uint8 images) and batched tensor views (raw / weak / strong)."""
