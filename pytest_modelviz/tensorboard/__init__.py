"""TensorBoard: the training sink (scalars, histograms, images, projector) and the Graphs-tab event."""
