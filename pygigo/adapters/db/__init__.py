"""``db://``: the Django database as Pygigo's broker, packaged as the tiny Django app
``pygigo_db`` (table, migration, admin). The adapter and its documentation (features, URL
form, options, transactional enqueue) are in :mod:`pygigo.adapters.db.broker`."""
