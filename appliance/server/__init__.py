"""The gRPC edge: servicers (protobuf <-> model, one service call each) and interceptors."""
