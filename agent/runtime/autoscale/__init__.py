"""Elastic allocation, the agent side (files in agent/runtime/autoscale/): the planner (pure
decisions), the scheduler interface with its Slurm and PBS commands, and the loop that
ties them to the server (`farmhand autoscale`)."""
