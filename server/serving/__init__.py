"""How the server meets HTTP (files in server/serving/): the request gate, connection limits,
request ids and logs, Prometheus metrics.
"""
