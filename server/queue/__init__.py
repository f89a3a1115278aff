"""The queue (files in server/queue/): record states, leases, runs and their reports, lifecycle,
the parent graph, claim matching, wakeups.
"""
