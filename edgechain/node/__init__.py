"""The node service: the network's applications over HTTP (GraphQL per application, SSE tokens).

``edgechain serve`` runs :func:`edgechain.node.server.serve`; :func:`edgechain.node.app.build_app`
builds the ASGI application over a :class:`~edgechain.client.Client`.
"""
