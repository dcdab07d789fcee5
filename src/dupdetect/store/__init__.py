"""The repositories: protocols by capability (``base``) and the pgvector and Pinecone adapters.
They read and write; they decide nothing."""
