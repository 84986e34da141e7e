"""Classifier retraining arms and their comparison on the real test split.

config (the ``evaluate`` params section), arms (name -> training-set function), train (the CNN and its loop),
metrics (scikit-learn and batched twins), stats (two-way bootstrap intervals, paired tests), plots, and
evaluate (the whole stage: jobs, outputs, MLflow).
"""
