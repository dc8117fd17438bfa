"""Numerical operations shared by plugins: k-means and kNN (faiss) and cluster-to-class matching.

Submodules are imported explicitly so that importing one (e.g. matching) does not load faiss.
"""
