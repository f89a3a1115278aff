"""Submitting records: the bulk route's work (`submit`), its one-statement insert
(`inserts`), the comparison of a resubmitted spec with the stored record (`differs`) and the
resolution of parents named by key (`parents`)."""
