"""Generated gRPC stubs of the storyboard.v1 protos. Do not edit: run `make protos`."""
