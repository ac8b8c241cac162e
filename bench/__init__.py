"""Side-by-side benchmarks: Pygigo vs raw Dramatiq vs Celery vs raw broker clients (see README.md)."""
