"""Declaration layer: decorators and markers that attach metadata, nothing else."""
