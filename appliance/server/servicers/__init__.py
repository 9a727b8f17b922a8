"""One servicer per service. Each RPC: translate the request, call one service method on the
engine (``engine.call``), translate the result. Domain errors are mapped by the interceptor."""
