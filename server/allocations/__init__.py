"""Elastic allocation on the server (files in server/allocations/): the backlog autoscalers
size batch jobs for, the jobs they submitted, and the lease each autoscaler holds."""
