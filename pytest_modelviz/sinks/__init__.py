"""Where training metrics go (TensorBoard, visdom), behind one small interface."""
