"""A small handwritten-digits classifier: models, data and a training script."""
