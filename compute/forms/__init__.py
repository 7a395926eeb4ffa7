"""Forms of the query pages, one module per job kind (dp_query.py, he_query.py) and their shared pieces."""
