"""lyra_client: typed Python SDK for the Lyra appliance's gRPC API, and the ``lyractl`` CLI."""
