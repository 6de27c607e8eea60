"""Data loading: IDX datasets, image folders, benchmark protocols and the shared image decoder."""
