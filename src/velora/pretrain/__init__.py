"""Pre-training the small backbone that ships with the package, on formula-driven fractal images."""
