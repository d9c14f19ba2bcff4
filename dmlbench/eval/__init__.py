"""Scoring embeddings: retrieval metrics on unseen classes (Recall@K, MAP@R, R-precision)."""
