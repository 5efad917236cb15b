"""barkeeper's schema, one module per version (``vNNNN_name.py``), append-only.

To change the schema, add a module with the next number and append it to
:data:`barkeeper.db._migrations.MIGRATIONS`; never edit a released one.
"""
