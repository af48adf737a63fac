"""Parameter tensors: the statistics the parameter snapshots store, and on-device histograms for logging."""
