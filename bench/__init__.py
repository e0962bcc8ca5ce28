"""bffproxy's benchmark: `make bench` (bench/run.py) prints figures and ratios; it is not a test."""
