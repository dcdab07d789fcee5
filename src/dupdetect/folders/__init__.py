"""Folders of photos on disk: the command line's ``ingest``, ``scan`` and ``reembed`` work."""
