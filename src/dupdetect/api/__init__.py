"""What every route shares: who is calling (``auth``), error mapping, trusted hosts and origins,
shutdown answers, slow-client limits, offline docs, health."""
