"""Reviewing duplicates: the review page, groups, "not a duplicate" decisions, keep/trash marks."""
