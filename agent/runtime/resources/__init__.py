"""What an agent may take on (files in agent/runtime/resources/): the node's resources, their
allocation, command slots, walltime and the disk guard.
"""
